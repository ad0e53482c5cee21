from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "supportdesk.events"
    verbose_name = "History and outbox"
