"""Reads the dashboard owns: the live log records (the `Log` table is written by common.logging and
read only here) and the cheap "has anything changed?" probe of the observatory state.

Everything else on the dashboard comes from the other apps' selectors (majordome, scheduler,
alert_manager, routine_manager, monitoring).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pyrosapp.models import Log, ObservatoryState

# One poll never returns more than this many records: the panel shows the newest ones, and the
# client asks again (after_id = the newest it holds) a second later anyway.
LOG_PAGE_MAX = 500
LOG_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
              "CRITICAL": logging.CRITICAL}


def log_level_number(name: str) -> int | None:
    """'warning' -> 30; '' -> None (no filter). Raises ValueError for an unknown level name."""
    if not name:
        return None
    if name.isdigit():
        return int(name)
    try:
        return LOG_LEVELS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown level {name!r}: one of {', '.join(LOG_LEVELS)}") from None


# What an astronomer's log view removes from a line (issue #16): the traceback after the first line, file paths,
# and e-mail addresses other than their own.
_PATH = re.compile(r"(?<![\w.-])(?:[A-Za-z]:\\|/)(?:[\w.@+-]+[/\\])+[\w.@+-]+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def log_message_for_astronomer(message: str, *, email: str) -> str:
    first = message.split("\n", 1)[0]
    first = _PATH.sub("…", first)
    return _EMAIL.sub(lambda found: found.group(0) if found.group(0).lower() == email.lower() else "…@…", first)


def log_records(*, after_id: int | None = None, before_id: int | None = None, min_level: int | None = None,
                component: str = "", limit: int = 100, astronomer=None) -> list[dict[str, Any]]:
    """Log records, newest first, as dicts.

    `after_id`: only records newer than that id (the live poll: usually returns nothing, one indexed
    range scan on the primary key). `before_id`: only older ones (scroll-back). `min_level`: that level
    and above. `component`: exact component (`majordome`, `alert_manager`...). `astronomer`: a user who
    is not an operator: only the public lines (the observatory's state) and those about their own
    requests, each cut to its first line without file paths or other people's e-mail addresses.
    """
    limit = max(1, min(int(limit), LOG_PAGE_MAX))
    queryset = Log.objects.all()
    if after_id is not None:
        queryset = queryset.filter(id__gt=after_id)
    if before_id is not None:
        queryset = queryset.filter(id__lt=before_id)
    if min_level is not None:
        queryset = queryset.filter(level__gte=min_level)
    if component:
        queryset = queryset.filter(component=component)
    if astronomer is not None:
        from django.db.models import Q

        from pyrosapp.models import Request

        queryset = queryset.filter(Q(public=True) | Q(request_id__in=Request.objects.filter(
            owner=astronomer).values("pk")))
    rows = queryset.order_by("-id").values("id", "time", "level", "level_name", "component", "message",
                                           "process")[:limit]
    records = [{**row, "time": row["time"].isoformat(timespec="milliseconds").replace("+00:00", "Z")} for row in rows]
    if astronomer is not None:
        for record in records:
            record["message"] = log_message_for_astronomer(record["message"], email=astronomer.email)
            record["process"] = ""
    return records


def log_latest_id() -> int:
    """The id of the newest record (0 when there is none): where a fresh page starts polling from."""
    return Log.objects.order_by("-id").values_list("id", flat=True).first() or 0


def log_components() -> list[str]:
    """Components that have logged something, for the filter menu (the column is indexed)."""
    return sorted(Log.objects.order_by().values_list("component", flat=True).distinct())


def observatory_version() -> int | None:
    """The version of the active site's observatory state: a single indexed one-row read, so a client
    polling every second costs one tiny query when nothing changed (None when no site is configured)."""
    return (ObservatoryState.objects.filter(site__is_active=True).order_by("site_id")
            .values_list("version", flat=True).first())


def night_summary(*, site, now=None) -> dict[str, Any]:
    """The night in progress or the next one at `site`: {"start": iso, "end": iso, "is_night": bool}, with the
    site's own twilight (``site.twilight_deg``, as the majordome's phases), or {"error": ...} where there is
    none (polar summer). Cached in :mod:`sky.sun`, which keeps astropy out of the status endpoint's hot path."""
    from django.utils import timezone

    from sky.sun import night_of

    now = now or timezone.now()
    try:
        start, end = night_of(site, now, twilight_deg=site.twilight_deg)
    except ValueError as exc:
        return {"start": None, "end": None, "error": str(exc)}
    result = {"start": _iso_z(start), "end": _iso_z(end)}
    result["is_night"] = result["start"] <= _iso_z(now) <= result["end"]
    return result


def _iso_z(value) -> str:
    from datetime import UTC

    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
