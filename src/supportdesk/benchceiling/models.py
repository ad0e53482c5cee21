from django.db import models


class Ping(models.Model):
    """One row per request to the ceiling view: the least a write request can do."""

    value = models.IntegerField()

    def __str__(self) -> str:
        return f"ping {self.value}"
