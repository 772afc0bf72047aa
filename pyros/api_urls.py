"""All REST API paths, under /api/. Each app contributes its own `api_urls` module."""

from importlib import import_module

from django.urls import include, path

urlpatterns = []
for _app in ("routine_manager", "scheduler", "alert_manager", "majordome", "monitoring", "analyzer", "procedures",
             "dashboard"):
    try:
        import_module(f"{_app}.api_urls")
    except ModuleNotFoundError as exc:
        if exc.name != f"{_app}.api_urls":
            raise
        continue
    urlpatterns.append(path("", include(f"{_app}.api_urls")))
