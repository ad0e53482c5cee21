from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "supportdesk.notify"
    verbose_name = "Mail out"

    def ready(self) -> None:
        # Registering the handlers here is what makes record() write their runs: an app that
        # forgot this import would silently send nothing.
        from supportdesk.events import registry
        from supportdesk.notify import handlers, password_reset, transport  # noqa: F401

        registry.around_runs(transport.session)
