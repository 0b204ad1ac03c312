"""Middleware and views whose every hook can pass, answer or raise, as a test decides.

``tests/test_chain.py`` runs the same request through Django's nested sync chain and through
asgi_bridge's chain in halves, and compares what each hook saw and what came out.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

# What ran, in order: "<middleware index>.<hook>" or "view".
trace: list[str] = []
# (middleware index, hook) -> "pass", "answer" or "raise"; the view's own under ("view", kind).
behaviour: dict[tuple[int | str, str], str] = {}


def act(index: int | str, hook: str) -> HttpResponse | None:
    trace.append(f"{index}.{hook}")
    what = behaviour.get((index, hook), "pass")
    if what == "raise":
        raise ValueError(f"{index}.{hook} failed")
    if what == "404":
        raise Http404(f"{index}.{hook} found nothing")
    if what == "answer":
        return HttpResponse(f"{index}.{hook} answered", status=203)
    return None


class Step(MiddlewareMixin):
    index = 0

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        return act(self.index, "request")

    def process_view(self, request: HttpRequest, *args: Any) -> HttpResponse | None:
        return act(self.index, "view")

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        return act(self.index, "exception")

    def process_template_response(
        self, request: HttpRequest, response: TemplateResponse
    ) -> TemplateResponse:
        answer = act(self.index, "template")
        if answer is not None:
            return template_response(request, f"{self.index}.template")
        return response

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return act(self.index, "response") or response


class Step0(Step):
    index = 0


class Step1(Step):
    index = 1


class Step2(Step):
    index = 2


STEPS = [f"tests.chain_fixtures.Step{index}" for index in range(3)]


def template_response(request: HttpRequest, text: str) -> TemplateResponse:
    template = engines["django"].from_string("rendered {{ text }}")
    return TemplateResponse(request, template, {"text": text})


def view_outcome(request: HttpRequest) -> HttpResponse:
    answer = act("view", "call")
    if answer is not None:
        return answer
    if behaviour.get(("view", "kind")) == "template":
        return template_response(request, "view")
    return HttpResponse("view answered")


def sync_view(request: HttpRequest) -> HttpResponse:
    return view_outcome(request)


async def async_view(request: HttpRequest) -> HttpResponse:
    return view_outcome(request)


urlpatterns = [path("sync/", sync_view), path("async/", async_view)]
