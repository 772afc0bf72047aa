from django.urls import path

from majordome import api

urlpatterns = [path("observatory/status/", api.StatusView.as_view(), name="observatory-status")] + [
    path(f"observatory/{action}/", api.ControlView.as_view(action_name=action), name=f"observatory-{action}")
    for action in ("pause", "resume", "stop", "abort", "close", "calibrate")
]
