"""Strict parsing of the JSON notices of NASA GCN Kafka into the :class:`~alert_manager.voevent.ParsedNotice`
of VOEvents, so that JSON notices are triaged, grouped and stored like VOEvent packets.

Pure module: no Django, no astropy. Since 2026-04-06 GCN sends notices over Kafka only; the new missions
(Einstein Probe, Swift BAT-GUANO, IceCube, SVOM and Fermi GBM in JSON, LVK ``igwn.gwalert``, ...) publish
``gcn-schema`` JSON, not VOEvent. :func:`parse_kafka_message` takes a Kafka message value and its topic and
sends VOEvent XML to :func:`~alert_manager.voevent.parse_voevent` and JSON to :func:`parse_json_notice`.

One parser per family, chosen by the topic (the ``$schema`` URL when the topic is not known; a topic and a
``$schema`` of two different known families is a rejection): Einstein Probe WXT, Swift BAT-GUANO, IceCube
gold/bronze tracks, IceCube LVK neutrino-track search, LVK ``igwn.gwalert``, Fermi GBM, SVOM, MAXI, and a
generic parser for the other gcn-schema notices (BurstCube, Glowbug, KM3NeT, CHIME, DSA-110, Super-K, Fermi
LAT, ...) that carry ``trigger_time`` and/or ``ra``/``dec`` (others, e.g. BOOM, are rejected with a reason).

Conventions (what a caller relies on):

- ``ivorn``: ``kafka://<topic>#<trigger id or "notice">_<notice type>_<16 hex>``, where the hex digits are
  the start of the SHA-256 of the notice's canonical JSON (sorted keys, compact, strings longer than 4 KiB
  replaced by their own SHA-256): the same notice received twice (even re-serialised) gets the same IVORN,
  two notices differing in any field get different ones.
  ``sha256``/``size_bytes`` are those of the raw bytes, as for VOEvents.
- ``stream`` is the Kafka topic; ``version`` the gcn-schema version of ``$schema`` ("v4.1.0", "main"), or
  "unversioned" (LVK alerts carry no ``$schema``); ``packet_type`` is None; ``author_ivorn`` None;
  ``authored_utc`` is ``alert_datetime`` (LVK: ``time_created``) when readable.
- ``role``: ``alert_tense`` current/commanded -> "observation", test/injection -> "test" (injection also
  flags ``hardware_injection``), planned -> "prediction", archival -> "utility"; a ``test`` schema
  (BurstCube) and LVK mock/test superevents (id starting with M or T, or search MDC) -> "test".
- ``trigger_scope`` comes from :func:`voevent._trigger_scope` (Swift, Fermi-GBM, Fermi-LAT, SVOM, LVK,
  IceCube, MAXI), so a JSON notice and a VOEvent of one trigger group together: Swift BAT-GUANO is
  ("Swift", id[0]) like BAT's TrigID, Fermi GBM JSON ("Fermi-GBM", the numeric id), SVOM ("SVOM", sb...),
  IceCube gold/bronze ("IceCube", "run/event" without leading zeros, as the AMON VOEvent), LVK ("LVK",
  superevent id). The IceCube LVK neutrino search is about an LVK superevent: ("LVK", ref_ID), so it joins
  the GW event. Einstein Probe has its own scope "EP-WXT" (EP sends no VOEvent; alerts without ``id``, as
  in May-June 2024, have no trigger).
- Position: degrees (gcn-schema's unit; an optional ``ra_dec_error_unit(s)`` arcmin/arcsec is converted).
  RA outside [0, 360] or Dec outside [-90, 90] is a rejection. The error radius is ``ra_dec_error`` as
  stated, at the notice's ``containment_probability`` (gcn-schema default 0.9; GBM states 0.68, Super-K
  0.68): no rescaling, as the VOEvent parser does; an array (ellipse: semi-major, semi-minor, angle; or
  per-axis errors) gives the largest of its first two values; MAXI ``rectangular_error_corners`` give the
  largest distance from the position to a corner. A position is usable only with a positive radius < 180:
  no radius, a zero radius, a negative one (SVOM -1 convention) or RA = Dec = 0 without error make it
  unusable with a reason. ``params["position"]`` keeps the stated error, shape, containment and
  ``systematic_included``. Swift BAT-GUANO: ``systematic_included`` true means the radius already holds
  BAT's systematic and is used as is; false (the schema's default) means statistical only: the radius is
  kept (the notice gives no systematic to add) and ``params["position"]["note"]`` says it is a lower bound.
- ``flags``: ``retraction`` (``alert_type`` retraction, LVK RETRACTION), ``known_source`` (MAXI known
  topic/schema, SVOM ECLAIRs catalogue notice, Fermi LAT flare of a catalogued source),
  ``hardware_injection`` (``alert_tense`` injection). A retraction cites ``kafka://<topic>#<trigger id>``
  (cite="retraction"): the retracted notices' own IVORNs hold content hashes and cannot be rebuilt; the
  trigger (scope + id) is what groups the retraction with its event. The IceCube LVK search cites the
  LVK VOEvent IVORN it names (``reference``, e.g. ``ivo://gwnet/LVC#S230914ak-2-Preliminary``) as followup.
- ``params``: ``{"format": "gcn-json", "topic", "schema", "family", "toplevel": {name: str(value)} for the
  scalar top-level fields (so ``ParsedNotice.param`` works), "groups": {}, "json": the whole decoded
  notice, "skymap": {...}, "position": {...} (when the notice has ra/dec)}``. In ``params["json"]`` every
  base64-looking string longer than 4 KiB (LVK ``event.skymap``, ``external_coinc.combined_skymap``,
  ``healpix_file``) is replaced by the string ``"<omitted: base64, N chars>"`` and any other string longer
  than 64 KiB by ``"<omitted: text, N chars>"``. ``params["skymap"]`` is ``{"present": False}`` or
  ``{"present": True, "format": "base64-moc-fits" (LVK) | "base64-fits" | "base64-fits-gz" | "url",
  "field": <dotted path> (embedded), "encoded_chars": N, "url": <healpix_url> (when given), ...}``; an
  embedded field that is not base64 FITS (the gcn-schema examples' placeholders) gives ``present`` False
  (or the URL when there is one) and ``invalid_field``. :func:`skymap_bytes` returns the decoded map.

Strictness: a message that is not UTF-8 JSON, not an object, larger than :data:`MAX_MESSAGE_BYTES`, nested
deeper than :data:`MAX_DEPTH`, with duplicate keys, NaN/Infinity, NUL or lone surrogates in a string (a
database cannot store them), a wrong type or an out-of-range value in a field PyROS reads, or without a family's required fields raises :class:`NoticeRejected` (a
:class:`~alert_manager.voevent.VOEventRejected`, so ``except VOEventRejected`` catches both formats) with a
reason for a person. Any other exception met while parsing is wrapped in it: nothing else escapes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from alert_manager.voevent import (
    CITE_FOLLOWUP,
    CITE_RETRACTION,
    FLAG_HARDWARE_INJECTION,
    FLAG_KNOWN_SOURCE,
    FLAG_RETRACTION,
    Citation,
    ParsedNotice,
    VOEventRejected,
    _trigger_scope,
    parse_voevent,
)

# An LVK alert with two embedded sky maps is ~2.1 MB; 8 MiB bounds the memory and CPU of one message.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32  # real notices nest 5 levels at most (BOOM); deeper is hostile
MAX_INLINE_BASE64_CHARS = 4096  # longer base64 strings stay out of params["json"]
MAX_INLINE_TEXT_CHARS = 65536  # longer text strings too
HEARTBEAT_TOPIC = "gcn.heartbeat"
UNVERSIONED = "unversioned"

_VOEVENT_TOPIC_PREFIXES = ("gcn.classic.voevent.", "gcn.notices.svom.voevent.", "gcn.notices.km3net.voevent")
_CLASSIC_OTHER_PREFIXES = ("gcn.classic.text.", "gcn.classic.binary.")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # Kafka's legal topic names
_SCHEMA_VERSION_RE = re.compile(r"/schema/([^/\s]+)/gcn/")
_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?\s*(Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE
)
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_BASE64_SAMPLE_CHARS = 4096  # a long string's base64 look is judged on its head and tail (a full scan is ~3 ms/MB)
_SUPEREVENT_RE = re.compile(r"^[A-Z]{1,3}\d{6}[a-z]{1,4}$")
_LVK_VOEVENT_NAME_RE = re.compile(r"^[A-Z]{1,3}\d{6}[a-z]{1,4}-\d+-[A-Za-z]+$")
_ID_TEXT_RE = re.compile(r"^[^\x00-\x1f]{1,100}$")
_TYPE_TEXT_RE = re.compile(r"^[A-Za-z][A-Za-z _-]{0,39}$")
_SLUG_RE = re.compile(r"[^A-Za-z0-9._-]+")
_FITS_MAGIC = b"SIMPLE  ="
_GZIP_MAGIC = b"\x1f\x8b"

# alert_tense (gcn-schema core/Alert) -> VOEvent role
_TENSE_ROLES = {
    "current": "observation",
    "commanded": "observation",
    "test": "test",
    "injection": "test",
    "planned": "prediction",
    "archival": "utility",
}
_ERROR_UNITS = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "arcmin": 1 / 60, "arcsec": 1 / 3600}


class NoticeRejected(VOEventRejected):
    """The Kafka message is not a notice PyROS accepts; ``reason`` says why, for a person."""


class HeartbeatMessage(NoticeRejected):
    """A ``gcn.heartbeat`` message: a liveness tick, not a notice (``reason`` is "heartbeat")."""

    def __init__(self, reason: str = "heartbeat") -> None:
        super().__init__(reason)


def is_heartbeat_topic(topic: str) -> bool:
    return topic == HEARTBEAT_TOPIC


def is_voevent_message(raw: bytes, *, topic: str) -> bool:
    """VOEvent XML: a VOEvent topic, or bytes whose first non-blank character is ``<``."""
    if isinstance(topic, str) and topic.startswith(_VOEVENT_TOPIC_PREFIXES):
        return True
    head = bytes(raw[:256]).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")


def parse_kafka_message(raw: bytes, *, topic: str) -> ParsedNotice:
    """One Kafka message value of ``topic`` -> :class:`ParsedNotice`.

    VOEvent XML goes to :func:`voevent.parse_voevent` (which raises :class:`VOEventRejected`; leading blank
    lines are dropped first, so ``sha256`` is that of the stripped bytes), JSON to
    :func:`parse_json_notice` (:class:`NoticeRejected`). ``gcn.heartbeat`` raises :class:`HeartbeatMessage`
    (reason "heartbeat"); check :func:`is_heartbeat_topic` first to skip heartbeats without an exception.
    GCN Classic text/binary topics are rejected (not supported). Only :class:`VOEventRejected` escapes.
    """
    if not isinstance(topic, str) or not _TOPIC_RE.match(topic):
        raise NoticeRejected(f"invalid Kafka topic {str(topic)[:100]!r}")
    if is_heartbeat_topic(topic):
        raise HeartbeatMessage()
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise NoticeRejected(f"a Kafka message value must be bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if topic.startswith(_CLASSIC_OTHER_PREFIXES):
        raise NoticeRejected(
            f"GCN Classic text/binary notices are not supported (topic {topic}): use the VOEvent topic"
        )
    try:
        if is_voevent_message(raw, topic=topic):
            # XML allows nothing before its declaration: drop the blank lines some producers prepend.
            return parse_voevent(raw.lstrip(b" \t\r\n"))
    except VOEventRejected:
        raise
    except Exception as exc:  # parse_voevent never raises anything else; belt and braces
        raise NoticeRejected(f"unreadable VOEvent ({type(exc).__name__}: {exc})") from exc
    return parse_json_notice(raw, topic=topic)


def parse_json_notice(raw: bytes, *, topic: str) -> ParsedNotice:
    """Parse one GCN Kafka JSON notice; raise :class:`NoticeRejected` (and nothing else) when not acceptable."""
    try:
        raw, topic, doc = _load(raw, topic)
        family = _family(topic, doc)
        draft = _FAMILY_PARSERS[family](doc, topic)
        return _build(raw, topic, doc, family, draft)
    except NoticeRejected:
        raise
    except VOEventRejected as exc:
        raise NoticeRejected(exc.reason) from exc
    except Exception as exc:  # any surprise in a hostile message is a rejection, never a crash
        raise NoticeRejected(f"unreadable JSON notice ({type(exc).__name__}: {exc})") from exc


def skymap_bytes(raw: bytes, *, topic: str) -> bytes | None:
    """The sky map embedded in the notice, decoded (LVK ``event.skymap``: multi-order FITS; gcn-schema
    ``healpix_file``: FITS), or None when the notice has none, only a URL, or a field that is not base64
    FITS. Raises :class:`NoticeRejected` for a message :func:`parse_json_notice` rejects."""
    try:
        _raw, topic, doc = _load(raw, topic)
        family = _family(topic, doc)
        for _path, value in _embedded_map_candidates(doc, family)[:1]:
            text = _base64_fits_text(value)
            if text is None:
                return None
            return base64.b64decode(text, validate=True)
        return None
    except NoticeRejected:
        raise
    except Exception as exc:
        raise NoticeRejected(f"unreadable JSON notice ({type(exc).__name__}: {exc})") from exc


# --- Decoding -------------------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(f"duplicate key {dup[:64]!r}")
    return out


def _reject_constant(name: str) -> Any:
    raise NoticeRejected(f"{name} is not valid JSON (NaN/Infinity are not allowed in a notice)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NoticeRejected(f"number {text[:40]} overflows a float")
    return value


def _load(raw: bytes, topic: str) -> tuple[bytes, str, dict[str, Any]]:
    if not isinstance(topic, str) or not _TOPIC_RE.match(topic):
        raise NoticeRejected(f"invalid Kafka topic {str(topic)[:100]!r}")
    if is_heartbeat_topic(topic):
        raise HeartbeatMessage()
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise NoticeRejected(f"a Kafka message value must be bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if len(raw) > MAX_MESSAGE_BYTES:
        raise NoticeRejected(f"message too large: {len(raw)} bytes (limit {MAX_MESSAGE_BYTES} bytes)")
    if not raw or raw.isspace():
        raise NoticeRejected("empty message")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NoticeRejected(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if text.lstrip()[:1] == "<":
        raise NoticeRejected("XML where a JSON notice was expected (VOEvent? use parse_kafka_message)")
    try:
        doc = json.loads(
            text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except NoticeRejected:
        raise
    except RecursionError as exc:
        raise NoticeRejected(f"JSON nested too deeply (limit {MAX_DEPTH} levels)") from exc
    except _DuplicateKey as exc:
        raise NoticeRejected(f"malformed JSON: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise NoticeRejected(f"malformed or truncated JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from exc
    except ValueError as exc:  # e.g. an integer literal with more than 4300 digits
        raise NoticeRejected(f"malformed JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise NoticeRejected(f"a notice must be a JSON object, got {type(doc).__name__}")
    _check_depth(doc)
    return raw, topic, doc


def _check_depth(doc: Any) -> None:
    """Bounded nesting, and strings a database can store (PostgreSQL's jsonb refuses NUL and lone surrogates)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NoticeRejected(f"JSON nested too deeply (limit {MAX_DEPTH} levels)")
        if isinstance(value, dict):
            for key in value:
                _check_text(key)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise NoticeRejected("NUL character in a JSON string")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NoticeRejected("lone surrogate (\\ud800-\\udfff) in a JSON string") from exc


# --- Typed field access (a wrong type is a rejection) ----------------------------------------------------


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _str(doc: dict[str, Any], key: str, *, path: str = "", required: bool = False, max_len: int = 1000) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise NoticeRejected(f"missing required field {_where(path, key)!r}")
        return None
    if not isinstance(value, str):
        raise NoticeRejected(f"field {_where(path, key)!r} must be a string, got {type(value).__name__}")
    value = value.strip()
    if len(value) > max_len:
        raise NoticeRejected(f"field {_where(path, key)!r} too long ({len(value)} chars, limit {max_len})")
    if not value and required:
        raise NoticeRejected(f"empty required field {_where(path, key)!r}")
    return value or None


def _num(doc: dict[str, Any], key: str, *, path: str = "", required: bool = False) -> float | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise NoticeRejected(f"missing required field {_where(path, key)!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NoticeRejected(f"field {_where(path, key)!r} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise NoticeRejected(f"field {_where(path, key)!r} is not a finite number")
    return value


def _bool(doc: dict[str, Any], key: str, *, path: str = "") -> bool | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise NoticeRejected(f"field {_where(path, key)!r} must be true or false, got {type(value).__name__}")
    return value


def _dict(doc: dict[str, Any], key: str, *, path: str = "") -> dict[str, Any] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise NoticeRejected(f"field {_where(path, key)!r} must be an object, got {type(value).__name__}")
    return value


def _ids(doc: dict[str, Any], key: str = "id") -> list[str]:
    """``id`` (or ``event_name``): a string, an integer, or an array of them (gcn-schema uses both)."""
    value = doc.get(key)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if len(items) > 20:
        raise NoticeRejected(f"field {key!r} has {len(items)} elements (limit 20)")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise NoticeRejected(f"field {key!r} must hold strings or integers, got {type(item).__name__}")
        text = str(item).strip()
        if not text:
            continue
        if not _ID_TEXT_RE.match(text):
            raise NoticeRejected(f"field {key!r} holds an invalid identifier {text[:100]!r}")
        out.append(text)
    return out


def _time(doc: dict[str, Any], key: str, *, path: str = "", required: bool = False) -> datetime | None:
    text = _str(doc, key, path=path, required=required, max_len=64)
    if text is None:
        return None
    moment = _parse_iso(text)
    if moment is None:
        raise NoticeRejected(f"unreadable time {_where(path, key)}={text!r} (expected ISO 8601)")
    return moment


def _time_or_none(doc: dict[str, Any], key: str) -> datetime | None:
    # Issue times are informative only: an odd one must not reject the notice.
    value = doc.get(key)
    return _parse_iso(value.strip()) if isinstance(value, str) and len(value) <= 64 else None


def _parse_iso(text: str) -> datetime | None:
    """ISO 8601 in UTC unless a zone is given (GBM, SVOM and LVK's old ``time_created`` omit it or the T)."""
    match = _ISO_RE.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC)
    except ValueError:
        return None
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if offset >= timedelta(hours=24):
            return None
        moment -= sign * offset
    return moment


# --- Family dispatch ------------------------------------------------------------------------------------

_TOPIC_FAMILIES = (
    ("gcn.notices.einstein_probe", "ep"),
    ("gcn.notices.swift.bat.guano", "guano"),
    ("gcn.notices.icecube.lvk_nu_track_search", "icecube_lvk"),
    ("gcn.notices.icecube", "icecube"),
    ("igwn.gwalert", "lvk"),
    ("gcn.notices.fermi.gbm", "gbm"),
    ("gcn.notices.svom", "svom"),
    ("gcn.notices.maxi", "maxi"),
)
_SCHEMA_FAMILIES = (
    (re.compile(r"/notices/(?:einstein_probe|ep)/", re.IGNORECASE), "ep"),
    (re.compile(r"/notices/swift/bat/guano", re.IGNORECASE), "guano"),
    (re.compile(r"/notices/icecube/lvk_?nu_?track_?search", re.IGNORECASE), "icecube_lvk"),
    (re.compile(r"/notices/icecube/", re.IGNORECASE), "icecube"),
    (re.compile(r"/notices/lvk/", re.IGNORECASE), "lvk"),
    (re.compile(r"/notices/fermi/gbm/", re.IGNORECASE), "gbm"),
    (re.compile(r"/notices/svom/", re.IGNORECASE), "svom"),
    (re.compile(r"/notices/maxi/", re.IGNORECASE), "maxi"),
)
# Generic families: (topic prefix, schema path fragment, mission, instrument)
_GENERIC_MISSIONS = (
    ("gcn.notices.fermi.lat", "/fermi/lat/", "Fermi", "LAT"),
    ("gcn.notices.swift", "/swift/", "Swift", None),
    ("gcn.notices.burstcube", "/burstcube/", "BurstCube", None),
    ("gcn.notices.glowbug", "/glowbug/", "Glowbug", None),
    ("gcn.notices.km3net", "/km3net/", "KM3NeT", None),
    ("gcn.notices.chime", "/chime/", "CHIME", None),
    ("gcn.notices.dsa110", "/dsa110/", "DSA-110", None),
    ("gcn.notices.superk", "/superk/", "Super-Kamiokande", None),
    ("gcn.notices.boom", "/boom/", "BOOM", None),
    ("gcn.notices.gecam", "/gecam/", "GECAM", None),
    ("gcn.notices.astrosat", "/astrosat/", "AstroSat", None),
)


def _topic_matches(topic: str, prefix: str) -> bool:
    return topic == prefix or topic.startswith(prefix + ".")


def _schema_url(doc: dict[str, Any]) -> str | None:
    return _str(doc, "$schema", max_len=500)


def _family(topic: str, doc: dict[str, Any]) -> str:
    by_topic = next((fam for prefix, fam in _TOPIC_FAMILIES if _topic_matches(topic, prefix)), None)
    schema = _schema_url(doc)
    by_schema = next((fam for regex, fam in _SCHEMA_FAMILIES if schema and regex.search(schema)), None)
    if by_topic and by_schema and by_topic != by_schema:
        raise NoticeRejected(f"$schema {schema!r} belongs to the {by_schema} family, but topic {topic} to {by_topic}")
    if by_topic or by_schema:
        return by_topic or by_schema  # type: ignore[return-value]
    if "superevent_id" in doc and "alert_type" in doc:
        return "lvk"
    return "generic"


# --- Drafts: what a family parser reads, before the common assembly ---------------------------------------


@dataclass
class _Position:
    ra_deg: float | None
    dec_deg: float | None
    error_deg: float | None
    usable: bool
    reason: str | None
    info: dict[str, Any]


@dataclass
class _Draft:
    mission: str
    instrument: str | None
    notice_type: str
    trigger_id: str | None = None
    trigger_scope: str | None = None  # default: voevent._trigger_scope(mission, instrument) when a trigger exists
    role: str = "observation"
    event_time_utc: datetime | None = None
    authored_utc: datetime | None = None
    position: _Position | None = None
    no_position_reason: str = "no position in the notice"
    flags: set[str] = field(default_factory=set)
    citations: list[Citation] = field(default_factory=list)
    skymap: dict[str, Any] = field(default_factory=lambda: {"present": False})

    def is_retraction(self) -> bool:
        return FLAG_RETRACTION in self.flags


def _alert_type(doc: dict[str, Any]) -> str | None:
    value = _str(doc, "alert_type", max_len=40)
    if value is not None and not _TYPE_TEXT_RE.match(value):
        raise NoticeRejected(f"invalid alert_type {value!r}")
    return value.lower() if value else None


def _role(doc: dict[str, Any], flags: set[str]) -> str:
    tense = _str(doc, "alert_tense", max_len=40)
    if tense is None:
        role = "observation"
    else:
        role = _TENSE_ROLES.get(tense.lower())
        if role is None:
            raise NoticeRejected(f"unknown alert_tense {tense!r} (expected one of {', '.join(_TENSE_ROLES)})")
        if tense.lower() == "injection":
            flags.add(FLAG_HARDWARE_INJECTION)
    schema = _schema_url(doc) or ""
    if re.search(r"/test\.schema\.json$", schema, re.IGNORECASE):  # BurstCube's test topic schema
        role = "test"
    return role


def _gcn_draft(doc: dict[str, Any], topic: str, mission: str, instrument: str | None, notice_type: str) -> _Draft:
    """What every gcn-schema notice shares: tense, alert type, times, position, sky map."""
    flags: set[str] = set()
    draft = _Draft(mission=mission, instrument=instrument, notice_type=notice_type, flags=flags)
    draft.role = _role(doc, flags)
    if _alert_type(doc) == "retraction":
        flags.add(FLAG_RETRACTION)
        draft.no_position_reason = "retraction: no position"
    draft.event_time_utc = _time(doc, "trigger_time")
    draft.authored_utc = _time_or_none(doc, "alert_datetime")
    draft.position = _read_position(doc)
    draft.skymap = _skymap_info(doc, "generic")
    if draft.position is None and draft.skymap.get("present") and not draft.is_retraction():
        draft.no_position_reason = "sky map only (no single position in the notice)"
    return draft


def _first_trigger(ids: list[str], *, prefer_digits: bool = False) -> str | None:
    if not ids:
        return None
    if prefer_digits:
        return next((i for i in ids if i.isdigit()), ids[0])
    return ids[0]


# --- Positions -----------------------------------------------------------------------------------------


def _angular_separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    ra1, dec1, ra2, dec2 = map(math.radians, (ra1, dec1, ra2, dec2))
    d_ra = ra2 - ra1
    num = math.hypot(
        math.cos(dec2) * math.sin(d_ra),
        math.cos(dec1) * math.sin(dec2) - math.sin(dec1) * math.cos(dec2) * math.cos(d_ra),
    )
    den = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(d_ra)
    return math.degrees(math.atan2(num, den))


def _check_ra_dec(ra: float, dec: float, where: str) -> None:
    if not 0.0 <= ra <= 360.0:
        raise NoticeRejected(f"{where}RA {ra:g} out of range [0, 360] deg")
    if not -90.0 <= dec <= 90.0:
        raise NoticeRejected(f"{where}Dec {dec:g} out of range [-90, 90] deg")


def _read_position(doc: dict[str, Any], *, path: str = "") -> _Position | None:
    ra = _num(doc, "ra", path=path)
    dec = _num(doc, "dec", path=path)
    if ra is None and dec is None:
        return None
    if ra is None or dec is None:
        raise NoticeRejected(f"{'ra' if dec is None else 'dec'} given without {'dec' if dec is None else 'ra'}")
    _check_ra_dec(ra, dec, "")
    info: dict[str, Any] = {"ra_deg": ra, "dec_deg": dec}
    unit_name = _str(doc, "ra_dec_error_unit", path=path, max_len=20) or _str(
        doc, "ra_dec_error_units", path=path, max_len=20
    )
    scale = 1.0
    if unit_name is not None:
        scale = _ERROR_UNITS.get(unit_name.lower())  # type: ignore[assignment]
        if scale is None:
            raise NoticeRejected(f"unknown ra_dec_error unit {unit_name!r} (expected deg, arcmin or arcsec)")
        info["error_unit"] = unit_name
    err: float | None = None
    raw_error = doc.get("ra_dec_error")
    if raw_error is not None:
        if isinstance(raw_error, list):
            if not 1 <= len(raw_error) <= 3:
                raise NoticeRejected(f"ra_dec_error array must have 1 to 3 values, got {len(raw_error)}")
            values = []
            for item in raw_error:
                if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
                    raise NoticeRejected("ra_dec_error array must hold finite numbers")
                values.append(float(item))
            # [semi-major, semi-minor, position angle] or per-axis errors: the largest axis bounds the region.
            err = max(values[:2]) * scale
            info["error_shape"] = "ellipse" if len(values) > 1 else "circle"
        else:
            stated = _num(doc, "ra_dec_error", path=path)
            err = stated * scale if stated is not None else None
            info["error_shape"] = "circle"
        info["error_stated"] = raw_error
    elif doc.get("rectangular_error_corners") is not None:
        err = _rectangle_radius(doc["rectangular_error_corners"], ra, dec)
        info["error_shape"] = "rectangle"
    containment = _num(doc, "containment_probability", path=path)
    if containment is not None and not 0.0 < containment <= 1.0:
        raise NoticeRejected(f"containment_probability {containment:g} out of range (0, 1]")
    systematic = _bool(doc, "systematic_included", path=path)
    info["containment_probability"] = containment if containment is not None else 0.9  # gcn-schema default
    info["systematic_included"] = systematic
    if err is not None and err > 180.0:
        raise NoticeRejected(f"error radius {err:g} deg out of range (larger than 180 deg)")
    info["error_deg"] = err
    if err is None:
        if ra == 0.0 and dec == 0.0:
            return _Position(None, None, None, False, "placeholder position RA = Dec = 0 with no error radius", info)
        return _Position(ra % 360.0, dec, None, False, "no error radius in the notice", info)
    if err < 0:
        return _Position(None, None, None, False, f"negative error radius ({err:g}): no reliable position", info)
    if err == 0.0:
        if ra == 0.0 and dec == 0.0:
            return _Position(None, None, None, False, "placeholder position RA = Dec = 0 with no error radius", info)
        return _Position(ra % 360.0, dec, None, False, "zero error radius: the uncertainty is not stated", info)
    return _Position(ra % 360.0, dec, err, True, None, info)


def _rectangle_radius(corners: Any, ra: float, dec: float) -> float:
    if not isinstance(corners, list) or not 3 <= len(corners) <= 16:
        raise NoticeRejected("rectangular_error_corners must be an array of 3 to 16 [ra, dec] corners")
    radius = 0.0
    for corner in corners:
        if (
            not isinstance(corner, list)
            or len(corner) != 2
            or any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in corner)
        ):
            raise NoticeRejected("rectangular_error_corners must hold [ra, dec] pairs of finite numbers")
        c_ra, c_dec = float(corner[0]), float(corner[1])
        _check_ra_dec(c_ra, c_dec, "rectangular_error_corners: ")
        radius = max(radius, _angular_separation_deg(ra, dec, c_ra, c_dec))
    return radius


# --- Sky maps ------------------------------------------------------------------------------------------


def _embedded_map_candidates(doc: dict[str, Any], family: str) -> list[tuple[str, Any]]:
    """(dotted path, value) of the embedded maps, the main one first."""
    out: list[tuple[str, Any]] = []
    if family == "lvk":
        event = doc.get("event")
        if isinstance(event, dict) and event.get("skymap") is not None:
            out.append(("event.skymap", event["skymap"]))
        return out
    if doc.get("healpix_file") is not None:
        out.append(("healpix_file", doc["healpix_file"]))
    return out


def _looks_base64(text: str) -> bool:
    """Base64 alphabet at the head and the tail (``skymap_bytes`` validates every character when decoding)."""
    n = _BASE64_SAMPLE_CHARS
    if len(text) <= 2 * n:
        return _BASE64_RE.fullmatch(text) is not None
    return _BASE64_RE.fullmatch(text[:n]) is not None and _BASE64_RE.fullmatch(text[-n:]) is not None


def _base64_fits_text(value: Any) -> str | None:
    """The base64 text of a FITS (or gzipped FITS) file, whitespace removed; None when it does not look like one."""
    if not isinstance(value, str):
        raise NoticeRejected(f"a sky map field must be a base64 string, got {type(value).__name__}")
    text = value if not any(c in value for c in " \t\r\n") else "".join(value.split())
    if len(text) < 16 or len(text) % 4 or not _looks_base64(text):
        return None
    head = base64.b64decode(text[:16])
    if not (head.startswith(_FITS_MAGIC) or head.startswith(_GZIP_MAGIC)):
        return None
    return text


def _skymap_info(doc: dict[str, Any], family: str) -> dict[str, Any]:
    info: dict[str, Any] = {"present": False}
    url = _str(doc, "healpix_url", max_len=2000) if family != "lvk" else None
    if url is not None:
        if not url.lower().startswith(("https://", "http://", "ftp://")):
            raise NoticeRejected(f"healpix_url is not a URL: {url[:100]!r}")
        info.update(present=True, format="url", url=url)
    candidates = _embedded_map_candidates(doc, family)
    if candidates:
        path, value = candidates[0]
        text = _base64_fits_text(value)
        if text is None:
            info["invalid_field"] = path  # e.g. the gcn-schema examples' placeholders "stuff", "hhhh..."
        else:
            head = base64.b64decode(text[:16])
            fmt = "base64-fits-gz" if head.startswith(_GZIP_MAGIC) else "base64-fits"
            if family == "lvk":
                fmt = "base64-moc-fits"
            info.update(present=True, format=fmt, field=path, encoded_chars=len(text))
    return info


def _sanitize(value: Any) -> tuple[Any, Any]:
    """(``value`` for params["json"], ``value`` for the content hash), in one walk (depth already bounded).

    params: base64-looking strings longer than 4 KiB and any string longer than 64 KiB become a marker.
    hash: every string longer than 4 KiB becomes its own SHA-256, so a 1 MB sky map is hashed once, not
    re-serialised."""
    if isinstance(value, dict):
        pairs = {k: _sanitize(v) for k, v in value.items()}
        return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
    if isinstance(value, list):
        items = [_sanitize(v) for v in value]
        return [p[0] for p in items], [p[1] for p in items]
    if isinstance(value, str) and len(value) > MAX_INLINE_BASE64_CHARS:
        digest = "\x00sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()
        compact = value if not any(c in value[:_BASE64_SAMPLE_CHARS] for c in " \t\r\n") else "".join(value.split())
        if _looks_base64(compact):
            return f"<omitted: base64, {len(value)} chars>", digest
        if len(value) > MAX_INLINE_TEXT_CHARS:
            return f"<omitted: text, {len(value)} chars>", digest
        return value, digest
    return value, value


def _toplevel(doc: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in doc.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, int | float):
            out[key] = repr(value) if isinstance(value, float) else str(value)
        elif isinstance(value, str) and len(value) <= 1000:
            out[key] = value
    return out


# --- Families ------------------------------------------------------------------------------------------


def _parse_ep(doc: dict[str, Any], topic: str) -> _Draft:
    instrument = (_str(doc, "instrument", max_len=20) or "WXT").upper()
    draft = _gcn_draft(doc, topic, "Einstein Probe", instrument, f"{instrument}_Alert")
    if FLAG_RETRACTION in draft.flags:
        draft.notice_type = f"{instrument}_Retraction"
    if draft.event_time_utc is None:
        raise NoticeRejected("missing required field 'trigger_time' (Einstein Probe alert)")
    draft.trigger_id = _first_trigger(_ids(doc))  # 2024 alerts have no id
    draft.trigger_scope = f"EP-{instrument}"
    return draft


def _parse_guano(doc: dict[str, Any], topic: str) -> _Draft:
    instrument = _str(doc, "instrument", max_len=30) or "BAT-GUANO"
    draft = _gcn_draft(doc, topic, "Swift", instrument, "GUANO_Alert")
    if draft.event_time_utc is None:
        raise NoticeRejected("missing required field 'trigger_time' (Swift BAT-GUANO notice)")
    draft.trigger_id = _first_trigger(_ids(doc), prefer_digits=True)
    if draft.trigger_id is None:
        raise NoticeRejected("missing required field 'id' (Swift BAT-GUANO notice)")
    if FLAG_RETRACTION in draft.flags:
        draft.notice_type = "GUANO_Retraction"
    elif draft.position is not None:
        draft.notice_type = "GUANO_Pos"
        if draft.position.info.get("systematic_included") is not True:
            draft.position.info["note"] = (
                "statistical error only (systematic_included false): the true region is larger than error_deg"
            )
    elif draft.skymap.get("present") or draft.skymap.get("invalid_field"):
        draft.notice_type = "GUANO_Map"
        draft.no_position_reason = "sky map only (no single position in the notice)"
    return draft


_GBM_TYPES = {
    "FERMI_GBM_ALERT": "GBM_Alert",
    "FERMI_GBM_FLIGHT_POS": "GBM_Flt_Pos",
    "FERMI_GBM_GROUND_POS": "GBM_Gnd_Pos",
    "FERMI_GBM_FINAL_POS": "GBM_Fin_Pos",
    "FERMI_GBM_SUBTHRESHOLD": "GBM_Subthresh",
    "INITIAL_ALERT": "GBM_Alert",
    "FLIGHT_POSITION": "GBM_Flt_Pos",
    "GROUND_POSITION": "GBM_Gnd_Pos",
    "FINAL_POSITION": "GBM_Fin_Pos",
    "SUBTHRESHOLD": "GBM_Subthresh",
}


def _parse_gbm(doc: dict[str, Any], topic: str) -> _Draft:
    draft = _gcn_draft(doc, topic, "Fermi", "GBM", "GBM_Alert")
    if draft.event_time_utc is None:
        raise NoticeRejected("missing required field 'trigger_time' (Fermi GBM notice)")
    kind = _str(doc, "notice_type", max_len=40) or _str(doc, "subtype", max_len=40)
    if FLAG_RETRACTION in draft.flags:
        draft.notice_type = "GBM_Retraction"
    elif kind is not None:
        draft.notice_type = _GBM_TYPES.get(kind.upper(), f"GBM_{_SLUG_RE.sub('_', kind)}")
    elif _alert_type(doc) == "update":
        draft.notice_type = "GBM_Update"
    draft.trigger_id = _first_trigger(_ids(doc), prefer_digits=True)
    if draft.position is None and draft.notice_type == "GBM_Alert":
        draft.no_position_reason = "GBM alert: no position yet"
    return draft


_SVOM_INSTRUMENTS = {"eclairs": "ECLAIRs", "grm": "GRM", "mxt": "MXT", "vt": "VT"}


def _parse_svom(doc: dict[str, Any], topic: str) -> _Draft:
    name = _str(doc, "instrument", required=True, max_len=20) or ""
    instrument = _SVOM_INSTRUMENTS.get(name.lower(), name)
    draft = _gcn_draft(doc, topic, "SVOM", instrument, "")
    if draft.event_time_utc is None:
        raise NoticeRejected("missing required field 'trigger_time' (SVOM notice)")
    draft.trigger_id = _first_trigger(_ids(doc))
    if draft.trigger_id is None:
        raise NoticeRejected("missing required field 'id' (SVOM Burst_Id)")
    alert_type = _alert_type(doc) or "initial"
    slew = (_str(doc, "slew_status", max_len=40) or "").lower()
    # The VOEvent notice types (IVORN suffixes), so strategies and grouping treat both formats alike.
    if FLAG_RETRACTION in draft.flags:
        draft.notice_type = "retraction"
    elif instrument == "GRM":
        draft.notice_type = "grm-trigger"
    elif instrument == "ECLAIRs":
        if _ids(doc, "event_name") and slew in ("", "not_requested"):
            draft.notice_type = "eclairs-catalog"
            draft.flags.add(FLAG_KNOWN_SOURCE)
        elif slew == "accepted":
            draft.notice_type = "slewing"
        elif slew == "rejected":
            draft.notice_type = "not-slewing"
        else:
            draft.notice_type = "eclairs-wakeup"
    else:
        draft.notice_type = f"{instrument.lower()}-{alert_type}"
    return draft


def _parse_maxi(doc: dict[str, Any], topic: str) -> _Draft:
    schema = _schema_url(doc) or ""
    known = topic.endswith(".known") or "gsc.known" in schema.lower()
    instrument = _str(doc, "instrument", max_len=20) or "GSC"
    draft = _gcn_draft(doc, topic, "MAXI", instrument, "Known_source_Pos" if known else "Unknown_source_Pos")
    if known:
        draft.flags.add(FLAG_KNOWN_SOURCE)
    if FLAG_RETRACTION in draft.flags:
        draft.notice_type = "Known_source_Retraction" if known else "Unknown_source_Retraction"
    if draft.event_time_utc is None:
        raise NoticeRejected("missing required field 'trigger_time' (MAXI notice)")
    draft.trigger_id = _first_trigger(_ids(doc))
    return draft


def _icecube_trigger(ids: list[str]) -> str | None:
    trigger = _first_trigger(ids)
    if trigger is not None:
        match = re.fullmatch(r"(\d+)_(\d+)", trigger)
        if match:  # run_event -> "run/event" without leading zeros, as the AMON VOEvent's run_id/event_id
            return f"{int(match.group(1))}/{int(match.group(2))}"
    return trigger


def _parse_icecube(doc: dict[str, Any], topic: str) -> _Draft:
    pipeline = (_str(doc, "pipeline", max_len=100) or "").lower()
    if "gold" in pipeline:
        notice_type = "ICECUBE_GOLD_Event"
    elif "bronze" in pipeline:
        notice_type = "ICECUBE_BRONZE_Event"
    else:
        notice_type = "ICECUBE_Event"
    draft = _gcn_draft(doc, topic, "IceCube", _str(doc, "instrument", max_len=30), notice_type)
    if draft.event_time_utc is None:
        raise NoticeRejected("missing required field 'trigger_time' (IceCube notice)")
    draft.trigger_id = _icecube_trigger(_ids(doc))
    return draft


def _parse_icecube_lvk(doc: dict[str, Any], topic: str) -> _Draft:
    draft = _gcn_draft(doc, topic, "IceCube", None, "LVK_Nu_Track_Search")
    ref = _str(doc, "ref_ID", required=True, max_len=64) or ""
    if not _SUPEREVENT_RE.match(ref):
        raise NoticeRejected(f"ref_ID {ref!r} is not an LVK superevent id")
    if draft.event_time_utc is None:
        raise NoticeRejected("missing required field 'trigger_time' (IceCube LVK search)")
    draft.trigger_id = ref
    draft.trigger_scope = _trigger_scope("LVK", None)  # about the GW superevent: joins its event
    if ref[0] in "MT":
        draft.role = "test"
    reference = _dict(doc, "reference")
    for value in (reference or {}).values():
        if isinstance(value, str) and _LVK_VOEVENT_NAME_RE.match(value):
            draft.citations.append(Citation(ivorn=f"ivo://gwnet/LVC#{value}", cite=CITE_FOLLOWUP))
    if draft.position is None:
        draft.no_position_reason = "neutrino coincidence search for a GW event: no single localisation"
    return draft


_LVK_TYPES = {
    "EARLYWARNING": "EarlyWarning",
    "PRELIMINARY": "Preliminary",
    "INITIAL": "Initial",
    "UPDATE": "Update",
    "RETRACTION": "Retraction",
}


def _parse_lvk(doc: dict[str, Any], topic: str) -> _Draft:
    superevent = _str(doc, "superevent_id", required=True, max_len=64) or ""
    if not _SUPEREVENT_RE.match(superevent):
        raise NoticeRejected(f"superevent_id {superevent!r} is not an LVK superevent id")
    alert_type = (_str(doc, "alert_type", required=True, max_len=40) or "").upper()
    notice_type = _LVK_TYPES.get(alert_type.replace("_", ""))  # EARLY_WARNING before 2023-03, EARLYWARNING after
    if notice_type is None:
        raise NoticeRejected(f"unknown LVK alert_type {alert_type!r} (expected one of {', '.join(_LVK_TYPES)})")
    draft = _Draft(mission="LVK", instrument=None, notice_type=notice_type, trigger_id=superevent)
    draft.authored_utc = _time_or_none(doc, "time_created")
    event = _dict(doc, "event")
    _dict(doc, "external_coinc")
    _dict(doc, "urls")
    search = None
    if notice_type == "Retraction":
        draft.flags.add(FLAG_RETRACTION)
        draft.no_position_reason = "retraction: no position"
    elif event is None:
        raise NoticeRejected(f"LVK {alert_type} alert without 'event' (only a retraction has event: null)")
    if event is not None:
        draft.event_time_utc = _time(event, "time", path="event", required=notice_type != "Retraction")
        search = _str(event, "search", path="event", max_len=40)
        _num(event, "far", path="event")
        _bool(event, "significant", path="event")
        draft.skymap = _skymap_info(doc, "lvk")
        if notice_type != "Retraction":
            draft.no_position_reason = "sky map only (no single position in the notice)"
    # Mock (MS...) and test (TS...) superevents never trigger: a retraction has no event.search to look at.
    if superevent[0] in "MT" or (search or "").upper() == "MDC":
        draft.role = "test"
    return draft


def _parse_generic(doc: dict[str, Any], topic: str) -> _Draft:
    schema = (_schema_url(doc) or "").lower()
    mission, instrument = None, None
    for prefix, fragment, name, inst in _GENERIC_MISSIONS:
        if _topic_matches(topic, prefix) or fragment in schema:
            mission, instrument = name, inst
            break
    if mission is None:
        parts = topic.split(".")
        mission = _str(doc, "mission", max_len=50) or (
            parts[2] if len(parts) > 2 and parts[:2] == ["gcn", "notices"] else topic
        )
    instrument = instrument or _str(doc, "instrument", max_len=50)
    alert_type = _alert_type(doc)
    flare = "flare" in topic.lower() or "/flare" in schema
    notice_type = "LAT_Flare" if flare else (alert_type or "alert").capitalize()
    draft = _gcn_draft(doc, topic, mission, instrument, notice_type)
    if draft.event_time_utc is None and draft.position is None and not draft.is_retraction():
        raise NoticeRejected(
            f"unsupported notice on {topic}: neither trigger_time nor ra/dec (nothing PyROS can observe)"
        )
    draft.trigger_id = _first_trigger(_ids(doc))
    if flare:
        # A flare of a catalogued source (reference_catalog: 3FGL, 4FGL, ...): not a new transient.
        draft.flags.add(FLAG_KNOWN_SOURCE)
    return draft


_FAMILY_PARSERS: dict[str, Callable[[dict[str, Any], str], _Draft]] = {
    "ep": _parse_ep,
    "guano": _parse_guano,
    "gbm": _parse_gbm,
    "svom": _parse_svom,
    "maxi": _parse_maxi,
    "icecube": _parse_icecube,
    "icecube_lvk": _parse_icecube_lvk,
    "lvk": _parse_lvk,
    "generic": _parse_generic,
}


# --- Assembly ------------------------------------------------------------------------------------------


def _canonical_sha256(hashable: dict[str, Any]) -> str:
    canonical = json.dumps(hashable, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _slug(text: str, limit: int) -> str:
    return _SLUG_RE.sub("-", text).strip("-")[:limit] or "x"


def _build(raw: bytes, topic: str, doc: dict[str, Any], family: str, draft: _Draft) -> ParsedNotice:
    trigger_scope = None
    if draft.trigger_id is not None:
        trigger_scope = draft.trigger_scope or _trigger_scope(draft.mission, draft.instrument)
    if FLAG_RETRACTION in draft.flags and draft.trigger_id is not None:
        draft.citations.append(Citation(ivorn=f"kafka://{topic}#{_slug(draft.trigger_id, 100)}", cite=CITE_RETRACTION))
    sanitized, hashable = _sanitize(doc)
    content = _canonical_sha256(hashable)
    ivorn = f"kafka://{topic}#{_slug(draft.trigger_id or 'notice', 100)}_{_slug(draft.notice_type, 40)}_{content[:16]}"

    schema = _schema_url(doc)
    version_match = _SCHEMA_VERSION_RE.search(schema or "")
    params: dict[str, Any] = {
        "format": "gcn-json",
        "topic": topic,
        "schema": schema,
        "family": family,
        "content_sha256": content,
        "toplevel": _toplevel(doc),
        "groups": {},
        "json": sanitized,
        "skymap": draft.skymap,
    }
    position = draft.position or _Position(None, None, None, False, draft.no_position_reason, {})
    if draft.position is not None:
        params["position"] = position.info
    return ParsedNotice(
        ivorn=ivorn,
        role=draft.role,
        version=version_match.group(1) if version_match else UNVERSIONED,
        stream=topic,
        mission=draft.mission,
        instrument=draft.instrument,
        notice_type=draft.notice_type,
        packet_type=None,
        trigger_id=draft.trigger_id,
        trigger_scope=trigger_scope,
        event_time_utc=draft.event_time_utc,
        ra_deg=position.ra_deg,
        dec_deg=position.dec_deg,
        error_deg=position.error_deg,
        position_usable=position.usable,
        position_reason=position.reason,
        author_ivorn=None,
        authored_utc=draft.authored_utc,
        sha256=hashlib.sha256(raw).hexdigest(),
        size_bytes=len(raw),
        citations=tuple(draft.citations),
        flags=frozenset(draft.flags),
        params=params,
    )
