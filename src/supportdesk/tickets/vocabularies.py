"""The built-in types, priorities and default tags, whose keys rules and the API use."""

from __future__ import annotations

from django.apps.registry import Apps

TYPES = [
    ("incident", "Incident", 10),
    ("problem", "Problem", 20),
    ("task", "Task", 30),
    ("question", "Question", 40),
]
PRIORITIES = [
    ("urgent", "Urgent", 10),
    ("high", "High", 20),
    ("normal", "Normal", 30),
    ("low", "Low", 40),
]
TAGS = ["Bug", "Installation", "Feature Request", "Help Wanted", "Question"]


def ensure_builtins(apps: Apps) -> None:
    """Create missing built-ins; never renames or re-ranks what an admin changed.

    Takes an app registry so that the data migration can pass its historical models.
    """
    ticket_type = apps.get_model("tickets", "TicketType")
    priority = apps.get_model("tickets", "Priority")
    tag = apps.get_model("tickets", "Tag")
    for model, entries in ((ticket_type, TYPES), (priority, PRIORITIES)):
        for key, name, rank in entries:
            model.objects.get_or_create(
                key=key, defaults={"name": name, "rank": rank, "is_builtin": True}
            )
    for name in TAGS:
        if not tag.objects.filter(name__iexact=name).exists():
            tag.objects.create(name=name)
