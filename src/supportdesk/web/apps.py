from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "supportdesk.web"
    verbose_name = "Web pages"
