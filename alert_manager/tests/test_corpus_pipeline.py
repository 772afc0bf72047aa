"""Every packet of the shared corpus through intake and processing on the database, in time order, with
the clock set to each packet's own time (so old bursts are "live" for the strategies)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from alert_manager import services
from alert_manager.services import intake, processing
from alert_manager.tests.conftest import CORPUS_DIR
from pyrosapp.models import Alert, AlertEvent, Request

pytestmark = pytest.mark.slow


def _when(entry: dict[str, Any]) -> datetime:
    text = entry.get("time") or ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime(2000, 1, 1, tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pytest.fixture
def processed_corpus(corpus, alert_observatory, telescope, monkeypatch):  # noqa: ANN001, ANN201
    """The corpus processed with the majordome running for real (default state, daytime: it moves nothing; its
    device connection is the recorder ``telescope``)."""
    monkeypatch.setattr(intake, "alert_queue", lambda *, alert_id: True)
    ivorn_of_file: dict[str, str] = {}
    for entry in sorted(corpus, key=_when):
        raw = (CORPUS_DIR / entry["file"]).read_bytes()
        with time_machine.travel(_when(entry) + timedelta(seconds=30), tick=False):
            alert_id = services.alert_receive(raw=raw)
            assert alert_id is not None, entry["file"]
            services.alert_process(alert_id=alert_id)  # nothing may escape: an exception fails the test here
        ivorn_of_file[entry["file"]] = entry["ivorn"]
    assert telescope.commands == []
    return ivorn_of_file


def test_every_corpus_packet_is_processed_and_stored_once(corpus, processed_corpus) -> None:  # noqa: ANN001
    assert not Alert.objects.filter(status__in=[Alert.Status.RECEIVED, Alert.Status.PROCESSING]).exists()
    ivorns = {entry["ivorn"] for entry in corpus}
    assert Alert.objects.count() == len(ivorns)  # the corpus repeats a few packets (re-formatted): one row each
    assert set(Alert.objects.values_list("ivorn", flat=True)) == ivorns
    rejected = list(Alert.objects.filter(status=Alert.Status.REJECTED).values_list("ivorn", "status_reason"))
    assert rejected == []  # every real packet is readable (VOEvent 1.1 and schema-invalid ones included)
    # Packets with no usable position are recognised as such.
    gbm_alerts = Alert.objects.filter(notice_type="GBM_Alert")
    assert gbm_alerts.exists() and not gbm_alerts.filter(position_usable=True).exists()
    # Trigger ids as index.json read them (TrigID=, Burst_Id=, GraceID=).
    for entry in corpus:
        if entry["trig"] and "=" in entry["trig"]:
            value = entry["trig"].split("=", 1)[1].strip()
            assert Alert.objects.get(ivorn=entry["ivorn"]).trigger_id.lstrip("0") == value.lstrip("0"), entry["file"]


def test_test_packets_never_create_a_request(processed_corpus) -> None:  # noqa: ANN001
    assert Alert.objects.filter(role="test").count() > 300
    assert not Request.objects.filter(alert_event__is_test=True).exists()
    assert not AlertEvent.objects.filter(is_test=True, request__isnull=False).exists()
    assert not Alert.objects.filter(role="test").exclude(status=Alert.Status.IGNORED).exists()
    # Real bursts did trigger: the pipeline is not simply refusing everything.
    assert Request.objects.filter(is_alert=True).count() >= 5


def test_each_trigger_series_ends_up_in_one_event(processed_corpus) -> None:  # noqa: ANN001
    events_of_series: dict[tuple[str, str, bool], set[int]] = defaultdict(set)
    for scope, trig, role, event_id in Alert.objects.exclude(trigger_id="").values_list(
            "trigger_scope", "trigger_id", "role", "event_id"):
        if role == "utility":
            continue
        events_of_series[(scope, trig, role == "test")].add(event_id)
    multi = {key: ids for key, ids in events_of_series.items() if len(ids) != 1}
    assert multi == {}
    # The corpus holds real series: several notices per trigger (GBM, Swift, SVOM, LVK).
    sizes = [Alert.objects.filter(event_id=next(iter(ids))).count() for ids in events_of_series.values()]
    assert sum(1 for n in sizes if n >= 3) >= 10


def test_corpus_svom_and_lvk_retractions_retract_their_events(processed_corpus) -> None:  # noqa: ANN001
    retractions = [a for a in Alert.objects.select_related("event__request") if "retraction" in a.flags]
    assert sum(1 for a in retractions if a.mission == "SVOM") == 3
    assert sum(1 for a in retractions if a.mission == "LVK") >= 50  # the corpus' LVK retractions are mock events
    for alert in retractions:
        assert alert.event is not None, alert.ivorn
        assert alert.event.status == AlertEvent.Status.RETRACTED, (alert.ivorn, alert.event.status)
        request = alert.event.request
        assert request is None or request.status == Request.Status.CANCELLED
    # The SVOM burst whose grm-trigger and retraction are both in the corpus share one event.
    svom = Alert.objects.get(ivorn="ivo://org.svom/fsc#sb26020402_retraction").event
    assert svom.notices.count() >= 2 and svom.status == AlertEvent.Status.RETRACTED
    # An LVK mock event: its Preliminary/Initial notices and the Retraction in one event, retracted.
    lvk = Alert.objects.get(ivorn="ivo://gwnet/LVC#MS260401g-3-Retraction").event
    assert lvk.is_test and lvk.notices.count() == 3


def _outcomes() -> tuple[set[frozenset[str]], dict[str, tuple]]:
    """What the pipeline decided: which notices share an event, and per notice its status, decision, reason
    and its event's status, reason, position, trigger ids and whether it has a request."""
    members: dict[int, set[str]] = defaultdict(set)
    per_alert: dict[str, tuple] = {}
    for alert in Alert.objects.select_related("event"):
        event = alert.event
        if event is not None:
            members[event.pk].add(alert.ivorn)
        per_alert[alert.ivorn] = (alert.status, alert.decision, alert.status_reason, alert.role, alert.trigger_id,
                                  event and (event.status, event.status_reason, event.ra_deg, event.dec_deg,
                                             event.error_deg, event.trigger_ids, sorted(event.missions),
                                             event.is_test, event.request_id is not None))
    return {frozenset(ivorns) for ivorns in members.values()}, per_alert


def test_chunks_give_the_same_events_and_outcomes_as_alert_by_alert(corpus, alert_observatory, telescope,  # noqa: ANN001
                                                                   monkeypatch, caplog) -> None:
    """A burst's chunk takes the bulk path for its quiet notices (test packets, not-a-GRB, not pointable...):
    over the whole corpus, processed 10 packets per call, every grouping and outcome is that of the per-alert
    path, one packet per call."""
    monkeypatch.setattr(intake, "alert_queue", lambda *, alert_id: True)  # the majordome: daytime, moves nothing
    entries = sorted(corpus, key=_when)
    results = []
    bulk_ok = processing._may_be_quiet
    for chunk_size in (1, 10):
        # The reference: every packet alone through the per-alert path (the bulk path switched off).
        monkeypatch.setattr(processing, "_may_be_quiet", bulk_ok if chunk_size > 1 else lambda *a, **kw: False)
        caplog.clear()
        for start in range(0, len(entries), chunk_size):
            chunk = entries[start:start + chunk_size]
            ids = []
            for entry in chunk:
                with time_machine.travel(_when(entry) + timedelta(seconds=30), tick=False):
                    ids.append(services.alert_receive(raw=(CORPUS_DIR / entry["file"]).read_bytes()))
            with time_machine.travel(_when(chunk[-1]) + timedelta(seconds=30), tick=False):
                if chunk_size == 1:
                    services.alert_process(alert_id=ids[0])
                else:
                    services.alert_process_many(alert_ids=[pk for pk in ids if pk is not None])
        results.append(_outcomes())
        AlertEvent.objects.all().delete()
        Alert.objects.all().delete()
        Request.objects.all().delete()
    (groups_one, per_alert_one), (groups_chunked, per_alert_chunked) = results
    # The bulk path did the work (its fallback, alert by alert, would hide a fault of it).
    assert not [r for r in caplog.records if r.getMessage().startswith("bulk processing of")]
    together = [r.getMessage() for r in caplog.records if "alerts processed together" in r.getMessage()]
    assert sum(int(m.split()[0]) for m in together) > 500
    assert len(groups_one) > 100
    assert groups_chunked == groups_one
    # Every outcome that does not depend on the clock (a chunk runs at its last packet's time) is identical, to
    # the word: the bulk path's (test packets, not-a-GRB, not pointable...) and the per-alert path's alike.
    clock_words = ("observable", "window", "request ")
    quiet = {ivorn for ivorn, outcome in per_alert_one.items()
             if (outcome[-1] is None or not outcome[-1][-1]) and not any(w in outcome[2] for w in clock_words)}
    assert len(quiet) > 500
    assert {i: per_alert_chunked[i] for i in quiet} == {i: per_alert_one[i] for i in quiet}
