"""Mail in: mailboxes, the SMTP gateway and IMAP polling, raw messages stored before they are
processed, and the processing that turns them into tickets and responses."""

from django.apps import AppConfig

SPOOL_MOVE_SECONDS = 60


class IntakeConfig(AppConfig):
    name = "supportdesk.intake"
    verbose_name = "Mail in"

    def ready(self) -> None:
        from supportdesk.events.periodic import every
        from supportdesk.intake import handlers  # noqa: F401  (registers the handler)
        from supportdesk.intake.spool import move_spooled_mail

        # The gateway moves its spool as mail comes; this is for a gateway that stopped.
        every(SPOOL_MOVE_SECONDS, name="move_spooled_mail")(move_spooled_mail)
