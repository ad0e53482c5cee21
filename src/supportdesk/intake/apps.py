"""Mail in: mailboxes, the SMTP gateway and IMAP polling, raw messages stored before they are
processed, and the processing that turns them into tickets and responses."""

from django.apps import AppConfig


class IntakeConfig(AppConfig):
    name = "supportdesk.intake"
    verbose_name = "Mail in"

    def ready(self) -> None:
        from supportdesk.intake import handlers  # noqa: F401  (registers the handler)
