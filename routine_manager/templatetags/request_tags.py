"""Small template helpers of the request pages."""

from __future__ import annotations

from django import template

register = template.Library()

BADGE_COLOURS = {
    "draft": "secondary", "submitted": "info", "scheduled": "primary", "executing": "warning",
    "completed": "success", "partially_completed": "success", "failed": "danger", "cancelled": "dark",
    "expired": "dark", "pending": "info", "planned": "primary", "unplanned": "secondary", "running": "warning",
}


@register.filter
def badge(status: str) -> str:
    """The Bootstrap colour of a status badge."""
    return BADGE_COLOURS.get(status, "secondary")


@register.filter
def minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.2f} h"
