"""URLs of the benchmark project; the paths are the ones bench/run.py requests."""

from django.urls import path

from benchsite import views

urlpatterns = [
    path("async-hello/", views.async_hello),
    path("sync-hello/", views.sync_hello),
    path("json/", views.json_view),
    path("echo/", views.echo),
    path("stream-async/", views.stream_async),
    path("stream-sync/", views.stream_sync),
    path("orm/", views.orm),
    path("orm-persistent/", views.orm_persistent),
    path("file/", views.file),
    path("upload/", views.upload),
    path("ws/echo/", views.websocket_echo),
    path("ws/room/<str:name>/", views.websocket_room),
    path("broadcast/bridge/", views.broadcast_bridge),
    path("broadcast/channels/", views.broadcast_channels),
]
