from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "supportdesk.tickets"
    verbose_name = "Tickets"

    def ready(self) -> None:
        from supportdesk.events.periodic import days_from_setting, every
        from supportdesk.tickets.services import close_resolved_tickets

        # Resolved tickets close after SUPPORTDESK_AUTO_CLOSE_DAYS days (0 = never).
        every(3600, name="close_resolved_tickets")(
            days_from_setting("AUTO_CLOSE_RESOLVED_DAYS", close_resolved_tickets)
        )
