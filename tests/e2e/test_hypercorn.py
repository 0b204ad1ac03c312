"""End-to-end scenarios against example_project served by hypercorn."""

from .scenarios import HTTPScenarios, IPv6Scenarios


class TestHypercorn(HTTPScenarios):
    server_name = "hypercorn"


class TestHypercornIPv6(IPv6Scenarios):
    server_name = "hypercorn"
