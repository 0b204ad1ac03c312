"""URLs of the demo app. End-to-end tests depend on these paths: change them with care."""

from django.urls import path

from asgi_bridge.metrics import metrics_view
from demo import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("hello/async/", views.hello_async, name="hello_async"),
    path("hello/sync/", views.hello_sync, name="hello_sync"),
    path("items/", views.item_list, name="items"),
    path("items/json/", views.item_list_json, name="items_json"),
    path("items/count/", views.item_count, name="item_count"),
    path("items/scratch/sync/", views.item_scratch_sync, name="item_scratch_sync"),
    path("items/scratch/async/", views.item_scratch_async, name="item_scratch_async"),
    path("form/", views.name_form, name="form"),
    path("upload/", views.upload, name="upload"),
    path("echo/", views.echo, name="echo"),
    path("echo/digest/", views.echo_digest, name="echo_digest"),
    path("meta/", views.request_meta, name="meta"),
    path("stream/sync/", views.stream_sync, name="stream_sync"),
    path("stream/async/", views.stream_async, name="stream_async"),
    path("stream/forever/", views.stream_forever, name="stream_forever"),
    path("stream/forever-sync/", views.stream_forever_sync, name="stream_forever_sync"),
    path("sse/", views.sse_page, name="sse"),
    path("sse/clock/", views.sse_clock, name="sse_clock"),
    path("sse/clock-sync/", views.sse_clock_sync, name="sse_clock_sync"),
    path("chat/", views.chat_page, name="chat"),
    path("chat/<str:room>/", views.chat_page, name="chat_room"),
    path("chat/<str:room>/announce/", views.chat_announce, name="chat_announce"),
    path("long-poll/", views.long_poll, name="long_poll"),
    path("long-poll/status/", views.long_poll_status, name="long_poll_status"),
    path("long-poll/release/", views.long_poll_release, name="long_poll_release"),
    path("download/", views.download, name="download"),
    path("lifespan/", views.lifespan_state, name="lifespan"),
    path("background/", views.background, name="background"),
    path("boom/", views.boom, name="boom"),
    path("probe/events/", views.probe_events, name="probe_events"),
    path("probe/thread/", views.probe_thread, name="probe_thread"),
    path("probe/gc/", views.probe_gc, name="probe_gc"),
    path("probe/secure/", views.probe_secure, name="probe_secure"),
    path("probe/slow/", views.probe_slow, name="probe_slow"),
    # The thread pool's metrics for Prometheus: threads busy and idle, waits, 503s.
    path("metrics/", metrics_view, name="metrics"),
    path("probe/slow-async/", views.probe_slow_async, name="probe_slow_async"),
    path("probe/pathsend/<slug:case>/", views.probe_pathsend, name="probe_pathsend"),
    path("ws/echo/", views.ws_echo, name="ws_echo"),
    path("ws/probe/group/<str:group>/", views.ws_probe_group, name="ws_probe_group"),
    path("probe/broadcast/state/", views.probe_broadcast_state, name="probe_broadcast_state"),
    path("probe/broadcast/<str:group>/", views.probe_broadcast, name="probe_broadcast"),
    path("ws/whoami/", views.ws_whoami, name="ws_whoami"),
    path("ws/denied/", views.ws_denied, name="ws_denied"),
    path("ws/fails/", views.ws_fails, name="ws_fails"),
    path("ws/chat/<str:room>/", views.ws_chat, name="ws_chat"),
]
