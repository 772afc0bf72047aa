"""Monitoring pages for operators: weather/PLC history plots with a selectable span, and one page per
device with its recent statuses. Thin: the reads are in monitoring/selectors.py."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from monitoring import selectors
from user_manager.roles import OPERATOR, role_required

HOURS_CHOICES = (1, 3, 6, 12, 24, 48, 168)
DEFAULT_HOURS = 6


def _hours(request: HttpRequest) -> float:
    raw = request.GET.get("hours", "")
    try:
        hours = float(raw) if raw else DEFAULT_HOURS
    except ValueError:
        hours = DEFAULT_HOURS
    return max(0.05, min(hours, selectors.MAX_HOURS))


@require_GET
@role_required(OPERATOR)
def weather(request: HttpRequest) -> HttpResponse:
    hours = _hours(request)
    return render(request, "monitoring/weather.html", {
        "hours": hours, "hours_choices": HOURS_CHOICES, "latest": selectors.latest_weather(),
        "history": selectors.weather_history(hours=hours), "devices": selectors.device_names(),
    })


@require_GET
@role_required(OPERATOR)
def weather_data(request: HttpRequest) -> JsonResponse:
    """The weather history as JSON (the page's plots reload it without reloading the page)."""
    return JsonResponse(selectors.weather_history(hours=_hours(request)))


@require_GET
@role_required(OPERATOR)
def device_list(request: HttpRequest) -> HttpResponse:
    devices = [(name, selectors.device_latest_status(device=name)) for name in selectors.device_names()]
    return render(request, "monitoring/device_list.html", {"devices": devices})


@require_GET
@role_required(OPERATOR)
def device_detail(request: HttpRequest, device: str) -> HttpResponse:
    latest = selectors.device_latest_status(device=device)
    if latest is None:
        raise Http404(f"No status was ever recorded for the device {device!r}.")
    hours = _hours(request)
    return render(request, "monitoring/device_detail.html", {
        "device": device, "latest": latest, "hours": hours, "hours_choices": HOURS_CHOICES,
        "history": selectors.device_status_history(device=device, hours=hours),
        "recent": selectors.device_recent_statuses(device=device, limit=50),
        "devices": selectors.device_names(),
    })
