"""End-to-end scenarios against example_project served by daphne."""

from .scenarios import HTTPScenarios, IPv6Scenarios


class TestDaphne(HTTPScenarios):
    server_name = "daphne"
    streams_request_body = False
    applies_backpressure = False


class TestDaphneIPv6(IPv6Scenarios):
    server_name = "daphne"
