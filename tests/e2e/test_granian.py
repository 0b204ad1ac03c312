"""End-to-end scenarios against example_project served by granian."""

from .scenarios import HTTPScenarios, IPv6Scenarios


class TestGranian(HTTPScenarios):
    server_name = "granian"
    # Granian advertises http.response.pathsend, so the file never passes through the app.
    sends_files_by_path = True


class TestGranianIPv6(IPv6Scenarios):
    server_name = "granian"
