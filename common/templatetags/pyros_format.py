"""Template filters for times and sky positions (the rules are in common/formats.py):

    {% load pyros_format %}
    {{ event.burst_time|utc }}        2026-12-04 23:41:07 UTC
    {{ event.burst_time|utc:"ms" }}   2026-12-04 23:41:07.123 UTC   (also "min", "time", "hm", "date")
    {{ event.ra_deg|ra }}             12h30m49.42s
    {{ event.dec_deg|dec }}           +12°23′28.0″
    {{ event.error_deg|angle }}       3.5′
    {{ tile.ra_deg|degrees }}         187.7059°   (|degrees:5 for five decimals)
"""

from __future__ import annotations

from django import template

from common import formats

register = template.Library()


@register.filter
def utc(value, style: str = "s") -> str:
    return formats.utc(value, style or "s")


@register.filter
def ra(value) -> str:
    return formats.ra(value)


@register.filter
def dec(value) -> str:
    return formats.dec(value)


@register.filter
def angle(value) -> str:
    return formats.angle(value)


@register.filter
def degrees(value, decimals: int = 4) -> str:
    return formats.degrees(value, decimals)
