from django.urls import path

from procedures import api

urlpatterns = [
    path("procedures/", api.ProcedureListApi.as_view(), name="api-procedures"),
    path("procedures/changes/", api.ProcedureChangesApi.as_view(), name="api-procedures-changes"),
    path("procedures/reload/", api.ProcedureReloadApi.as_view(), name="api-procedures-reload"),
    path("procedures/<str:name>/", api.ProcedureDetailApi.as_view(), name="api-procedure"),
    path("queue/", api.QueueApi.as_view(), name="api-queue"),
    path("queue/history/", api.HistoryApi.as_view(), name="api-queue-history"),
    path("queue/history/requeue/", api.command_view("requeue").as_view(), name="api-queue-requeue"),
    path("queue/history/recover/", api.command_view("recover").as_view(), name="api-queue-recover"),
    path("queue/items/<uuid:uid>/", api.QueueItemApi.as_view(), name="api-queue-item"),
]
for _action in ("items", "batch", "move", "remove", "edit", "clear", "start", "stop", "pause", "resume", "abort",
                "environment", "block"):
    urlpatterns.append(path(f"queue/{_action}/", api.command_view(_action).as_view(), name=f"api-queue-{_action}"))
