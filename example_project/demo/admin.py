"""Admin registration for Item, so /admin/ has something of the demo's to show."""

from django.contrib import admin

from demo.models import Item


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "created"]
    search_fields = ["name"]
