"""Test runner that keeps ``manage.py test`` inside the example project.

Without labels Django discovers tests from the current directory; run from the repository root
that would also collect asgi_bridge's own pytest suite, which needs its own settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from unittest import TestSuite

from django.conf import settings
from django.test.runner import DiscoverRunner


class ExampleProjectTestRunner(DiscoverRunner):
    def build_suite(self, test_labels: Sequence[str] | None = None, **kwargs: Any) -> TestSuite:
        return super().build_suite(test_labels or [str(settings.BASE_DIR)], **kwargs)
