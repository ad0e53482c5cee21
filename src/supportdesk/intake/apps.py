from django.apps import AppConfig


class IntakeConfig(AppConfig):
    name = "supportdesk.intake"
    verbose_name = "Mail in"
