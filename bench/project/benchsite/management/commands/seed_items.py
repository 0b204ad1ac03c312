"""Management command that fills the Item table with the rows /orm/ reads."""

from typing import Any

from django.core.management.base import BaseCommand

from benchsite.models import Item

ITEM_COUNT = 20


class Command(BaseCommand):
    help = f"Replace all Item rows with {ITEM_COUNT} deterministic ones."

    def handle(self, *args: Any, **options: Any) -> None:
        Item.objects.all().delete()
        Item.objects.bulk_create(
            Item(name=f"Item {number:02d}", price_cents=100 * number + 99)
            for number in range(1, ITEM_COUNT + 1)
        )
        self.stdout.write(f"Seeded {ITEM_COUNT} items.")
