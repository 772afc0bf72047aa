"""The dashboard: the home page after login, composed from the other apps' selectors.

The page is rendered once with the current status (readable without JavaScript), then
dashboard/static/dashboard/dashboard.js keeps it live through the cheap endpoints of dashboard/api.py;
the alert banner and the astronomer's panel are small server-rendered fragments refreshed by htmx.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET

from alert_manager.selectors import alert_event_activity, alert_in_progress, alert_stream_alarms, strategy_alarms
from dashboard import selectors
from majordome.selectors import ObservatoryNotConfigured, active_site, observatory_status
from monitoring.selectors import latest_weather
from user_manager.roles import ASTRONOMER, is_operator, role_required

log = logging.getLogger("pyros.dashboard")

# Operator controls: (action of POST /api/observatory/<action>/, label, JSON body, button style, confirm?).
# The majordome's API applies them (operators only); the page only offers them to operators.
# The last field: the question asked before the action, saying its effect ("" asks nothing).
OPERATOR_CONTROLS = (
    ("pause", "Pause after sequence", {"when": "deferred"}, "outline-warning", ""),
    ("pause", "Pause now", {"when": "immediate"}, "warning",
     "Pause now: the current exposure is aborted and nothing new starts until Resume."),
    ("resume", "Resume", {}, "success", ""),
    ("stop", "Stop", {}, "outline-danger",
     "Stop the night: nothing more is observed tonight, the mount parks and the dome closes, until Resume."),
    ("abort", "Abort sequence", {}, "danger",
     "Abort the current sequence: its exposure stops now and it is not resumed; the plan goes on."),
    ("close", "Close & park", {}, "outline-light",
     "Close the dome and park: this also stops the night (nothing is observed until Resume)."),
)
LOG_LEVEL_CHOICES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
WEATHER_HOURS_CHOICES = (1, 3, 6, 12, 24)


def _url_or_none(name: str, *args: Any) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:  # the page of another module is not there (yet): show no link
        return None


def alert_banner_context() -> dict[str, Any]:
    """The burst being observed or waiting for visibility (alert_manager's selector), with its link, and the
    alarms of the alert streams (GRB alerts that would be missed: a silent GCN Kafka stream...)."""
    alarms = alert_stream_alarms()
    streams_url = _url_or_none("alert_manager:streams")
    # GRB alerts that would be ignored: no active strategy triggers observations (issue #16 guardrail).
    strategy_context = {"strategy_alarms": strategy_alarms(),
                        "strategies_url": _url_or_none("alert_manager:strategy_list")}
    event = alert_in_progress()
    if event is None:
        return {"alert": None, "stream_alarms": alarms, "streams_url": streams_url, **strategy_context}
    return {"alert": event, "alert_activity": alert_event_activity(event),
            "alert_url": _url_or_none("alert_manager:event_detail", event.pk),
            "stream_alarms": alarms, "streams_url": streams_url, **strategy_context}


def astronomer_context(user) -> dict[str, Any]:
    """The user's own requests (statuses) and their next planned observation in tonight's plan."""
    from routine_manager.selectors import request_list
    from scheduler.selectors import schedule_current_entries

    requests = list(request_list(user=user, mine_only=True)[:8])
    next_entry = None
    # The plan of a night holds a few dozen entries: picking the user's first one in Python keeps the
    # scheduler's selector the only query on its tables.
    for entry in schedule_current_entries(waiting_only=True):
        if entry.sequence.request.owner_id == user.pk:
            next_entry = entry
            break
    return {"my_requests": requests, "my_next_entry": next_entry,
            "requests_url": _url_or_none("routine_manager:request_list")}


def _status_or_none() -> tuple[dict[str, Any] | None, str]:
    try:
        status = observatory_status()
        status["night"] = selectors.night_summary(site=active_site())
        return status, ""
    except ObservatoryNotConfigured as exc:
        return None, str(exc)


@require_GET
@role_required(ASTRONOMER)
def home(request: HttpRequest) -> HttpResponse:
    status, not_configured = _status_or_none()
    operator = is_operator(request.user)
    context: dict[str, Any] = {
        "status": status,
        "not_configured": not_configured,
        "weather_latest": latest_weather(),
        "show_controls": operator,
        "operator_controls": [
            {"action": action, "label": label, "body_json": json.dumps(body), "style": style, "confirm": confirm}
            for action, label, body, style, confirm in OPERATOR_CONTROLS
        ] if operator else [],
        "log_levels": LOG_LEVEL_CHOICES,
        "log_components": selectors.log_components(),
        "weather_hours": WEATHER_HOURS_CHOICES,
        "schedule_url": _url_or_none("scheduler:current"),
        "weather_url": _url_or_none("monitoring:weather") if operator else None,  # operators only
        **alert_banner_context(),
    }
    if not operator:
        context.update(astronomer_context(request.user))
    return render(request, "dashboard/home.html", context)


@require_GET
@role_required(ASTRONOMER)
def alert_banner(request: HttpRequest) -> HttpResponse:
    """The alert banner alone (htmx polls it): empty when no burst is in progress."""
    return render(request, "dashboard/partials/alert_banner.html", alert_banner_context())


@require_GET
@role_required(ASTRONOMER)
def my_requests(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/partials/my_requests.html", astronomer_context(request.user))


@require_GET
@role_required(ASTRONOMER)
def timeline_data(request: HttpRequest) -> JsonResponse:
    """Tonight's plan in the scheduler's chart format (fetched after the page is shown: the Sun and
    altitude curves take astropy tens of milliseconds, which the first paint should not wait for)."""
    from scheduler.selectors import schedule_current, schedule_timeline_data

    schedule = schedule_current()
    if schedule is None:
        return JsonResponse({"schedule": None})
    return JsonResponse({"schedule": schedule.pk, "timeline": schedule_timeline_data(schedule)})
