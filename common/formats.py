"""How PyROS shows times and sky positions to people (one place: the template filters in
common/templatetags/pyros_format.py and the page scripts' `pyrosFormat` in static/pyros/pyros.js
follow these rules; CSV and JSON keep ISO 8601 with full precision).

- Times are UTC, ISO order, with the zone said: ``2026-12-04 23:41:07 UTC`` (styles: to the minute,
  to the millisecond, the time of day only).
- Right ascension in hours, minutes, seconds to 0.01 s: ``12h30m49.42s``; declination in degrees,
  arcminutes, arcseconds to 0.1″: ``+12°23′28.0″`` (one unit step of each is ~0.15″ and 0.1″).
- Angular sizes (error radii, separations) with 2-3 significant digits in the unit that suits them:
  ``42″``, ``3.5′``, ``2.5°``.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

EMPTY = "—"
UTC_STYLES = {
    "s": "%Y-%m-%d %H:%M:%S",
    "min": "%Y-%m-%d %H:%M",
    "ms": "%Y-%m-%d %H:%M:%S.%f",
    "time": "%H:%M:%S",
    "hm": "%H:%M",
    "date": "%Y-%m-%d",
}


def as_utc(value: datetime | date | str | None) -> datetime | None:
    """A datetime in UTC from a datetime (naive ones are taken as UTC) or an ISO 8601 string."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):  # a date
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc(value: datetime | date | str | None, style: str = "s") -> str:
    """``2026-12-04 23:41:07 UTC`` (style ``s``), ``… 23:41 UTC`` (``min``), ``… 23:41:07.123 UTC``
    (``ms``), ``23:41:07 UTC`` (``time``), ``23:41 UTC`` (``hm``), ``2026-12-04`` (``date``).
    None or an unreadable string gives an em dash."""
    moment = as_utc(value)
    if moment is None:
        return EMPTY
    if style not in UTC_STYLES:
        raise ValueError(f"unknown time style {style!r}: one of {', '.join(UTC_STYLES)}")
    text = moment.strftime(UTC_STYLES[style])
    if style == "ms":
        text = text[:-3]
    return text if style == "date" else f"{text} UTC"


def finite_number(value) -> float | None:
    """``value`` as a finite float, or None (not a number, NaN, infinite)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def ra(value_deg) -> str:
    """Right ascension (degrees) as ``12h30m49.42s``."""
    deg = finite_number(value_deg)
    if deg is None:
        return EMPTY
    centiseconds = round((deg % 360.0) / 15.0 * 360000)  # hundredths of a second of time
    centiseconds %= 24 * 360000
    hours, rest = divmod(centiseconds, 360000)
    minutes, rest = divmod(rest, 6000)
    return f"{hours:02d}h{minutes:02d}m{rest / 100:05.2f}s"


def dec(value_deg) -> str:
    """Declination (degrees) as ``+12°23′28.0″``."""
    deg = finite_number(value_deg)
    if deg is None:
        return EMPTY
    sign = "-" if deg < 0 else "+"
    tenths = round(abs(deg) * 36000)  # tenths of an arcsecond
    degrees, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    if tenths == 0:
        sign = "+"
    return f"{sign}{degrees:02d}°{minutes:02d}′{rest / 10:04.1f}″"


def _significant(x: float) -> str:
    """2-3 significant digits, no exponent: 42, 3.5, 0.52, 123."""
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}".rstrip("0").rstrip(".") if x < 99.95 else f"{x:.0f}"
    if x >= 1:
        return f"{x:.2f}".rstrip("0").rstrip(".") if x < 9.995 else f"{x:.1f}".rstrip("0").rstrip(".")
    return f"{x:.2g}"


def angle(value_deg) -> str:
    """An angular size (degrees) in arcseconds below 1′, arcminutes below 1°, else degrees."""
    deg = finite_number(value_deg)
    if deg is None:
        return EMPTY
    size = abs(deg)
    if size * 60 < 1:
        return f"{_significant(size * 3600)}″"
    if size < 1:
        return f"{_significant(size * 60)}′"
    return f"{_significant(size)}°"


def degrees(value_deg, decimals: int = 4) -> str:
    """Decimal degrees rounded (4-5 decimals: 0.4″-0.04″), for places that want degrees."""
    deg = finite_number(value_deg)
    if deg is None:
        return EMPTY
    return f"{deg:.{int(decimals)}f}°"
