"""Seed a handful of Items so the list pages and the JSON endpoint have data from the start."""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

SEED_ITEM_NAMES = ["Teapot", "Lantern", "Compass", "Notebook", "Kite"]


def add_seed_items(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    Item = apps.get_model("demo", "Item")
    db_alias = schema_editor.connection.alias
    Item.objects.using(db_alias).bulk_create(Item(name=name) for name in SEED_ITEM_NAMES)


def remove_seed_items(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    Item = apps.get_model("demo", "Item")
    db_alias = schema_editor.connection.alias
    Item.objects.using(db_alias).filter(name__in=SEED_ITEM_NAMES).delete()


class Migration(migrations.Migration):
    dependencies = [("demo", "0001_initial")]

    operations = [migrations.RunPython(add_seed_items, remove_seed_items)]
