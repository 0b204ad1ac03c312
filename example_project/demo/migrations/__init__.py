"""Migrations for the demo app."""
