"""Reads of the alert manager: the pages, the API and the dashboard compose these."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from pyrosapp.models import Alert, AlertEvent, Image, Sequence, Strategy

# An event counts as "in progress" on the dashboard for this long after its last update.
IN_PROGRESS_WINDOW = timedelta(hours=12)
_NOTICE_FIELDS = ("id", "event_id", "ivorn", "role", "mission", "notice_type", "packet_type", "trigger_id",
                  "received_at", "event_time", "ra_deg", "dec_deg", "error_deg", "status", "status_reason", "decision")


def _notices() -> Prefetch:
    # The list shows a few fields of each notice: never load the raw XML or params of hundreds of packets.
    return Prefetch("notices", queryset=Alert.objects.only(*_NOTICE_FIELDS).order_by("received_at", "pk"))


def alert_event_list(*, include_tests: bool = False, status: str = "") -> QuerySet[AlertEvent]:
    """Events newest first (by burst time, then creation), with their notices."""
    events = AlertEvent.objects.select_related("request").prefetch_related(_notices())
    if not include_tests:
        events = events.filter(is_test=False)
    if status:
        events = events.filter(status=status)
    return events.order_by("-created", "-pk")


def alert_event_get(*, event_id: int) -> AlertEvent | None:
    return (AlertEvent.objects.select_related("request", "strategy", "request__program")
            .prefetch_related(Prefetch("notices", queryset=Alert.objects.order_by("received_at", "pk")))
            .filter(pk=event_id).first())


def alert_event_images(*, event: AlertEvent, limit: int = 200) -> QuerySet[Image]:
    if event.tiles:  # a re-planned tiling: the observed tiles of earlier plans are in earlier requests
        return Image.objects.filter(sequence__request__alert_event=event).order_by("date_obs")[:limit]
    if event.request_id is None:
        return Image.objects.none()
    return Image.objects.filter(sequence__request_id=event.request_id).order_by("date_obs")[:limit]


# --- Tiles of a large localisation ------------------------------------------------------------------
TILES_PNG_CACHE_S = 24 * 3600


@dataclass(frozen=True)
class TileRow:
    plan: int
    rank: int
    index: int
    ra_deg: float
    dec_deg: float
    probability: float
    cumulative_probability: float
    sequence_id: int | None
    request_id: int | None
    status: str  # the sequence's status value ("" when it has none)
    status_label: str
    observed: bool


def alert_event_tiles(*, event: AlertEvent) -> list[TileRow]:
    """The event's tiles, plan by plan and in rank order, with their sequences' statuses."""
    from alert_manager.tile_entries import OBSERVED_STATUSES, sequence_ids

    entries = list(event.tiles or ())
    statuses = dict(Sequence.objects.filter(pk__in=sequence_ids(entries)).values_list("pk", "status"))
    labels = dict(Sequence.Status.choices)
    rows = []
    for e in entries:
        status = statuses.get(e.get("sequence"), "")
        rows.append(TileRow(plan=int(e.get("plan", 1)), rank=int(e.get("rank", 0)), index=int(e["index"]),
                            ra_deg=float(e["ra_deg"]), dec_deg=float(e["dec_deg"]),
                            probability=float(e.get("probability", 0.0)),
                            cumulative_probability=float(e.get("cumulative_probability", 0.0)),
                            sequence_id=e.get("sequence"), request_id=e.get("request"), status=status,
                            status_label=labels.get(status, "—"), observed=status in OBSERVED_STATUSES))
    rows.sort(key=lambda r: (r.plan, r.rank))
    return rows


def alert_event_tiles_png(*, event: AlertEvent) -> bytes | None:
    """A PNG of the event's localisation (the sky map, or the error circle, of ``event.skymap_alert``) with its
    tiles, observed ones filled; None when the event has no tiles. Cached per event and state of its tiles."""
    from django.core.cache import cache

    from alert_manager import tiling
    from alert_manager.notices_json import skymap_bytes
    from alert_manager.tile_entries import tile_from_entry

    rows = alert_event_tiles(event=event)
    if not rows or event.skymap_alert_id is None:
        return None
    state = json.dumps([event.pk, event.skymap_alert_id, [(r.index, r.plan, r.rank, r.observed) for r in rows]])
    key = "alert-tiles-png:" + hashlib.sha1(state.encode()).hexdigest()
    png = cache.get(key)
    if png is not None:
        return png
    alert = Alert.objects.filter(pk=event.skymap_alert_id).first()
    if alert is None:
        return None
    skymap, circle = None, None
    if (alert.params or {}).get("skymap", {}).get("present"):
        try:
            data = skymap_bytes(bytes(alert.raw_xml), topic=alert.kafka_topic)
            skymap = tiling.load_skymap(data) if data is not None else None
        except Exception:  # noqa: BLE001 - it was read when the tiles were planned; draw the circle, if any
            skymap = None
    if skymap is None:
        if alert.ra_deg is None or alert.dec_deg is None or not alert.error_deg:
            return None
        circle = (alert.ra_deg, alert.dec_deg, alert.error_deg)
    by_key = {(int(e.get("plan", 1)), int(e.get("rank", 0)), int(e["index"])): e for e in event.tiles}
    tiles = [tile_from_entry(by_key[(r.plan, r.rank, r.index)]) for r in rows]
    observed = {r.index for r in rows if r.observed}
    covered = max((r.cumulative_probability for r in rows), default=0.0)
    png = tiling.render_tiles_png(skymap=skymap, circle=circle, tiles=tiles, observed=observed,
                                  title=f"{event.name}: {len(tiles)} tiles, {covered:.1%} of the probability")
    cache.set(key, png, TILES_PNG_CACHE_S)
    return png


def alert_get(*, alert_id: int) -> Alert | None:
    return Alert.objects.select_related("event").filter(pk=alert_id).first()


def alert_unattached_list(*, limit: int = 50) -> QuerySet[Alert]:
    """Recent packets that belong to no event: rejected, utility, test packets without a trigger."""
    return Alert.objects.filter(event__isnull=True).only(*_NOTICE_FIELDS).order_by("-received_at", "-pk")[:limit]


def alert_in_progress() -> AlertEvent | None:
    """The burst the observatory is working on (dashboard banner): the latest real event observing or
    waiting for visibility, updated within the last hours."""
    since = timezone.now() - IN_PROGRESS_WINDOW
    return (AlertEvent.objects.filter(is_test=False, updated__gte=since,
                                      status__in=[AlertEvent.Status.OBSERVING, AlertEvent.Status.AWAITING_VISIBILITY])
            .select_related("request").order_by("-updated", "-pk").first())


@dataclass(frozen=True)
class EventActivity:
    """What the telescope is actually doing for an event, read from the executor's state (issue #16: the
    banner said "being observed now" for a sequence that was not planned, dome closed, mount parked).
    ``code``: observing (the executor is exposing on one of the event's sequences), planned (a sequence of
    it is in tonight's plan), waiting (neither, with the reason), or the event's own status once it is over."""

    code: str
    text: str

    @property
    def observing(self) -> bool:
        return self.code == "observing"


def _event_request_ids(event: AlertEvent) -> set[int]:
    ids = set(event.requests.values_list("pk", flat=True))  # every request of the event (tiling: several)
    if event.request_id:
        ids.add(event.request_id)
    return ids


def _devices_in_words(snapshot: dict) -> str:
    dome = (snapshot.get("dome") or {}).get("shutter") or (snapshot.get("dome") or {}).get("state")
    mount = (snapshot.get("mount") or {}).get("state")
    parts = [f"dome {dome}" if dome else "", f"mount {mount}" if mount and mount != "unknown" else ""]
    return ", ".join(part for part in parts if part)


def alert_event_activity(event: AlertEvent, *, now=None) -> EventActivity:
    """The event's status in words from what the executor does (``ObservatoryState.progress`` and
    ``current_sequence``, written only by the majordome), never from the event's own hopes."""
    from majordome.selectors import ObservatoryNotConfigured, idle_reason, observatory_state

    if event.status not in (AlertEvent.Status.OBSERVING, AlertEvent.Status.AWAITING_VISIBILITY):
        return EventActivity(code=event.status, text=event.get_status_display().lower())
    now = now or timezone.now()
    request_ids = _event_request_ids(event)
    try:
        state = observatory_state()
    except ObservatoryNotConfigured:
        return EventActivity(code="waiting", text="not being observed: no observatory is configured")
    progress = state.progress or {}
    if (state.current_sequence_id and progress.get("kind", "sequence") == "sequence"
            and progress.get("sequence") == state.current_sequence_id and progress.get("request") in request_ids):
        detail = progress.get("target") or progress.get("name") or "its position"
        if progress.get("exposure") and progress.get("of"):
            detail += f", exposure {progress['exposure']}/{progress['of']}"
            if progress.get("filter"):
                detail += f" in {progress['filter']}"
        return EventActivity(code="observing", text=f"being observed now: {detail}")
    planned = (Sequence.objects.filter(request_id__in=request_ids, status=Sequence.Status.PLANNED,
                                       planned_start__isnull=False, planned_end__gt=now)
               .order_by("planned_start").values_list("planned_start", flat=True).first())
    if planned is not None:
        minutes = max(0, round((planned - now).total_seconds() / 60))
        return EventActivity(code="planned", text=f"planned at {planned:%H:%M:%S} UTC (in {minutes} min), not "
                                                  f"observed yet")
    why = []
    if state.current_sequence_id and progress.get("sequence"):
        why.append(f"the telescope is on {progress.get('name') or 'another sequence'}")
    elif progress.get("kind") in ("calibration", "procedure"):
        why.append(f"the telescope is busy with a {progress['kind']}")
    else:
        reason = (idle_reason(state=state, now=now) or {}).get("text")
        if reason:
            why.append(reason)
    devices = _devices_in_words(state.devices_snapshot or {})
    if devices:
        why.append(devices)
    if event.status == AlertEvent.Status.AWAITING_VISIBILITY and event.status_reason:
        why.insert(0, event.status_reason)
    return EventActivity(code="waiting", text="not being observed: " + ("; ".join(why) or "not planned"))


def strategy_is_last_triggering(*, strategy: Strategy) -> bool:
    """True when switching this strategy off would leave no active strategy that triggers observations."""
    return (strategy.is_active and strategy.triggers
            and not Strategy.objects.filter(is_active=True, triggers=True).exclude(pk=strategy.pk).exists())


def strategy_alarms() -> list[str]:
    """GRB alerts that would be ignored, in words, for the dashboard (issue #16: one click could leave no
    strategy active, silently)."""
    if not Strategy.objects.filter(is_active=True, triggers=True).exists():
        return ["No active alert strategy triggers observations: GRB alerts are received but ignored."]
    return []


def strategy_list() -> QuerySet[Strategy]:
    return Strategy.objects.order_by("-is_active", "name")


def pipeline_counts(*, since_hours: float = 24.0) -> dict[str, int]:
    """Packets per status over the last hours (the alerts page's header, monitoring)."""
    since = timezone.now() - timedelta(hours=since_hours)
    counts = dict.fromkeys(Alert.Status.values, 0)
    for status in Alert.objects.filter(received_at__gte=since).values_list("status", flat=True):
        counts[status] += 1
    return counts


# --- The shared corpus, for the test-packet page -------------------------------------------------


@dataclass(frozen=True)
class CorpusPacket:
    file: str
    ivorn: str
    role: str
    type: str
    time: str


def corpus_dir() -> Path:
    """``PYROS_VOEVENT_CORPUS`` or ../shared/data/voevents next to the repository."""
    configured = os.environ.get("PYROS_VOEVENT_CORPUS")
    return Path(configured) if configured else Path(settings.BASE_DIR).parent / "shared" / "data" / "voevents"


def corpus_packets(*, roles: tuple[str, ...] = ("observation",)) -> list[CorpusPacket]:
    index = corpus_dir() / "index.json"
    if not index.is_file():
        return []
    entries = json.loads(index.read_text(encoding="utf-8"))
    return [CorpusPacket(e["file"], e["ivorn"], e["role"], e["type"], e["time"]) for e in entries
            if e.get("role") in roles]


def corpus_packet_bytes(*, file: str) -> bytes | None:
    """The bytes of one corpus file named in the index (never a path outside the corpus)."""
    known = {p.file for p in corpus_packets(roles=("observation", "test", "utility"))}
    if file not in known:
        return None
    path = (corpus_dir() / file).resolve()
    if corpus_dir().resolve() not in path.parents:
        return None
    return path.read_bytes()


@dataclass(frozen=True)
class KafkaCorpusMessage:
    file: str
    topic: str
    mission: str
    kind: str
    time: str


def kafka_corpus_dir() -> Path:
    """``PYROS_KAFKA_CORPUS`` or ../shared/data/gcn-kafka next to the repository."""
    configured = os.environ.get("PYROS_KAFKA_CORPUS")
    return Path(configured) if configured else Path(settings.BASE_DIR).parent / "shared" / "data" / "gcn-kafka"


def kafka_corpus_messages() -> list[KafkaCorpusMessage]:
    index = kafka_corpus_dir() / "index.json"
    if not index.is_file():
        return []
    return [KafkaCorpusMessage(e["file"], e["topic"], e.get("mission") or "", e.get("notice_kind") or "",
                               e.get("time") or "") for e in json.loads(index.read_text(encoding="utf-8"))]


def kafka_corpus_message(*, file: str) -> tuple[str, bytes] | None:
    """(topic, bytes) of one message named in the Kafka corpus index (never a path outside the corpus)."""
    entry = next((m for m in kafka_corpus_messages() if m.file == file), None)
    if entry is None:
        return None
    root = kafka_corpus_dir().resolve()
    path = (root / file).resolve()
    return (entry.topic, path.read_bytes()) if root in path.parents else None


# --- Alert streams ----------------------------------------------------------------------------------
# The alert-kafka process reports its health at least every second; older than this, it is not running.
KAFKA_REPORT_STALE_S = 15.0


@dataclass(frozen=True)
class StreamStatus:
    source: str  # "kafka" / "vtp"
    title: str
    level: str  # ok / warning / error / off
    summary: str
    detail: dict


def kafka_stream_status(*, now=None) -> StreamStatus:  # noqa: ANN001
    """GCN Kafka as its intake last reported it (AlertStreamHealth), judged now."""
    from alert_manager.kafka_consumer import health_status
    from pyrosapp.models import AlertStreamHealth

    now = now or timezone.now()
    row = AlertStreamHealth.objects.filter(source="kafka").first()
    if row is None:
        return StreamStatus("kafka", "GCN Kafka", "off", "the alert-kafka process has never reported (is it running?)",
                            {"topics_chosen": []})
    detail = {"snapshot": row.snapshot or {}, "configured": row.configured, "detail": row.detail,
              "topics_chosen": row.topics or [], "updated": row.updated}
    if not row.configured:
        return StreamStatus("kafka", "GCN Kafka", "off", row.detail or "not configured", detail)
    age_s = (now - row.updated).total_seconds()
    if age_s > KAFKA_REPORT_STALE_S:
        return StreamStatus("kafka", "GCN Kafka", "error",
                            f"no report from the alert-kafka process for {age_s:.0f} s: it is not running", detail)
    if not row.snapshot:
        return StreamStatus("kafka", "GCN Kafka", "warning", f"starting ({row.detail})", detail)
    level, sentence = health_status(row.snapshot, now=now.timestamp(), stale_after=KAFKA_REPORT_STALE_S)
    return StreamStatus("kafka", "GCN Kafka", level, sentence, detail)


def vtp_stream_status(*, now=None) -> StreamStatus:  # noqa: ANN001
    """Comet (VTP): its port answering, and what arrived by VTP lately."""
    import socket

    now = now or timezone.now()
    port = settings.PYROS_COMET_PORT
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            listening = True
    except OSError:
        listening = False
    vtp = Alert.objects.filter(transport=Alert.Transport.VTP)
    last = vtp.order_by("-received_at").values("received_at", "stream", "notice_type").first()
    day = vtp.filter(received_at__gte=now - timedelta(hours=24)).count()
    detail = {"port": port, "listening": listening, "last": last, "last_24h": day}
    if not listening:
        return StreamStatus("vtp", "Comet (VTP)", "warning",
                            f"Comet does not answer on 127.0.0.1:{port} (local injection and partner VTP feeds)", detail)
    return StreamStatus("vtp", "Comet (VTP)", "ok", f"listening on port {port}; {day} packet(s) in 24 h", detail)


def alert_stream_alarms(*, now=None) -> list[str]:  # noqa: ANN001
    """What would make PyROS miss a GRB alert, in words, for the dashboard: a configured GCN Kafka stream that is
    silent (no heartbeat for 60 s), disconnected or not running."""
    status = kafka_stream_status(now=now)
    if status.level == "error":
        return [f"GCN Kafka: {status.summary}"]
    return []


def alert_event_live_version(*, event_id: int) -> str | None:
    """What the event page shows, condensed (polled by the page, which redraws when it changes): the event,
    its notices, its request and sequences, images, and what the executor does for it. None: no such event."""
    from django.db.models import Count, Max

    event = AlertEvent.objects.filter(pk=event_id).first()
    if event is None:
        return None
    parts = (
        event.status, event.status_reason, event.request_id, event.ra_deg, event.dec_deg, event.error_deg,
        event.pointed_ra_deg, event.pointed_dec_deg, len(event.tiles or []),
        Alert.objects.filter(event_id=event_id).aggregate(n=Count("pk"), last=Max("received_at")),
        list(Sequence.objects.filter(request_id=event.request_id).order_by("pk").values_list("status", "request__status"))
        if event.request_id else [],
        Image.objects.filter(sequence__request__alert_event_id=event_id).aggregate(n=Count("pk"),
                                                                                    analysed=Max("analysis__updated")),
        alert_event_activity(event).text,
    )
    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:16]
