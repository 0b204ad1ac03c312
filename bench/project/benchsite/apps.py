"""App configuration for the benchmark project's single app."""

from django.apps import AppConfig


class BenchsiteConfig(AppConfig):
    name = "benchsite"
    default_auto_field = "django.db.models.BigAutoField"
