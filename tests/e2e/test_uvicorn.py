"""End-to-end scenarios against example_project served by uvicorn."""

from .scenarios import HTTPScenarios, IPv6Scenarios


class TestUvicorn(HTTPScenarios):
    server_name = "uvicorn"


class TestUvicornIPv6(IPv6Scenarios):
    server_name = "uvicorn"
