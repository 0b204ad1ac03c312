"""App configuration for the demo app; connects the request-lifecycle probes at startup."""

from django.apps import AppConfig
from django.core.signals import request_finished, request_started


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "asgi_bridge demo"

    def ready(self) -> None:
        from demo import probes

        # dispatch_uid keeps the counters honest if ready() runs more than once.
        request_started.connect(
            probes.count_request_started, dispatch_uid="demo.probes.count_request_started"
        )
        request_finished.connect(
            probes.count_request_finished, dispatch_uid="demo.probes.count_request_finished"
        )
