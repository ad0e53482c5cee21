"""The built-in types, priorities and default tags, whose keys rules and the API use."""

from django.db import migrations

TYPES = [("incident", "Incident", 10), ("problem", "Problem", 20), ("task", "Task", 30),
         ("question", "Question", 40)]
PRIORITIES = [("urgent", "Urgent", 10), ("high", "High", 20), ("normal", "Normal", 30),
              ("low", "Low", 40)]
TAGS = ["Bug", "Installation", "Feature Request", "Help Wanted", "Question"]


def add_builtins(apps, schema_editor):
    TicketType = apps.get_model("tickets", "TicketType")
    Priority = apps.get_model("tickets", "Priority")
    Tag = apps.get_model("tickets", "Tag")
    for key, name, rank in TYPES:
        TicketType.objects.update_or_create(key=key, defaults={"name": name, "rank": rank, "is_builtin": True})
    for key, name, rank in PRIORITIES:
        Priority.objects.update_or_create(key=key, defaults={"name": name, "rank": rank, "is_builtin": True})
    for name in TAGS:
        Tag.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("tickets", "0001_initial")]
    operations = [migrations.RunPython(add_builtins, migrations.RunPython.noop)]
