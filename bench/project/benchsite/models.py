"""The one model the /orm/ endpoint queries."""

from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100)
    price_cents = models.IntegerField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name
