"""The built-in types, priorities and default tags."""

from django.db import migrations

from supportdesk.tickets.vocabularies import ensure_builtins


def add_builtins(apps, schema_editor):
    ensure_builtins(apps)


class Migration(migrations.Migration):
    dependencies = [("tickets", "0001_initial")]
    operations = [migrations.RunPython(add_builtins, migrations.RunPython.noop)]
