"""Values of a request as people type them: RA in hours or degrees (``13:29:52.7``, ``202.47``), Dec
(``+47:11:43``), UTC dates, parsed leniently and strictly checked (pure, no database)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime


def format_utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_SEXAGESIMAL_SPLIT = re.compile(r"[hdms:°'\"′″\s]+")


def _sexagesimal(text: str) -> float:
    """'13:29:52.7', '13h29m52.7s', '-0 30 00' -> signed value in the first unit (hours or degrees)."""
    text = text.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    parts = [p for p in _SEXAGESIMAL_SPLIT.split(text.lstrip("+-")) if p]
    if not 1 <= len(parts) <= 3:
        raise ValueError
    values = [float(p) for p in parts]
    if any(not math.isfinite(v) or v < 0 for v in values) or any(v >= 60 for v in values[1:]):
        raise ValueError
    if len(values) > 1 and values[0] != int(values[0]):
        raise ValueError
    return sign * (values[0] + sum(v / 60.0 ** (i + 1) for i, v in enumerate(values[1:])))


def _is_sexagesimal(text: str) -> bool:
    return bool(re.search(r"[hdms:°'\"′″]|\d\s+\d", text.strip()))


def parse_ra_deg(value: Any) -> float:
    """RA in degrees from degrees (number or text) or sexagesimal HOURS text ('13:29:52.7', '13h29m52.7s')."""
    if isinstance(value, str) and _is_sexagesimal(value):
        hours = _sexagesimal(value)
        if not 0 <= hours < 24:
            raise ValueError("RA in hours must be between 0h and 24h")
        return hours * 15.0
    return finite_float(value)


def parse_dec_deg(value: Any) -> float:
    """Dec in degrees from degrees (number or text) or sexagesimal degrees text ('+47:11:43', '-05d30m')."""
    if isinstance(value, str) and _is_sexagesimal(value):
        return _sexagesimal(value)
    return finite_float(value)


def finite_float(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError
    if isinstance(value, str):
        value = value.strip()
    number = float(value)
    if not math.isfinite(number):
        raise ValueError
    return number


def parse_utc(value: Any) -> datetime:
    """An aware datetime from an aware datetime or an ISO 8601 text with a time zone ('...Z')."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise ValueError("not a date and time: use ISO 8601, e.g. 2026-12-16T17:00:00Z")
    else:
        raise ValueError("expected a date and time as ISO 8601 text, e.g. 2026-12-16T17:00:00Z")
    if parsed.tzinfo is None:
        raise ValueError("add a time zone (UTC: end with Z), e.g. 2026-12-16T17:00:00Z")
    return parsed.astimezone(UTC)
