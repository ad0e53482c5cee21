from django.apps import AppConfig


class BenchCeilingConfig(AppConfig):
    name = "supportdesk.benchceiling"
    label = "benchceiling"
    verbose_name = "Benchmark ceiling"
