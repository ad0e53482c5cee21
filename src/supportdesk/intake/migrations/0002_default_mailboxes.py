from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def create_default_mailboxes(apps: Apps, _schema_editor: BaseDatabaseSchemaEditor) -> None:
    from supportdesk.intake.mailboxes import ensure_default_mailboxes

    ensure_default_mailboxes(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("intake", "0001_mailboxes_and_messages"),
        ("tickets", "0002_builtin_vocabularies"),
    ]

    operations = [migrations.RunPython(create_default_mailboxes, migrations.RunPython.noop)]
