"""Alert pages (login required by the middleware). Thin: parse, call a selector or service, render."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from alert_manager import selectors, services
from alert_manager.voevent import MAX_PACKET_BYTES, VOEventRejected
from alert_manager.vtp import VTPError
from pyrosapp.models import AlertEvent, Strategy
from user_manager.roles import ADMINISTRATOR, ASTRONOMER, OPERATOR, has_role, role_required


def _raw_text(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", errors="replace")


@role_required(ASTRONOMER)
def event_list(request):
    include_tests = request.GET.get("tests") == "1"
    status = request.GET.get("status", "")
    events = selectors.alert_event_list(include_tests=include_tests,
                                        status=status if status in AlertEvent.Status.values else "")
    page = Paginator(events, 25).get_page(request.GET.get("page"))
    for event in page:
        # Events the alert manager believes observed: say what the executor actually does for them.
        event.activity = (selectors.alert_event_activity(event) if event.status in
                          (AlertEvent.Status.OBSERVING, AlertEvent.Status.AWAITING_VISIBILITY) else None)
    in_progress = selectors.alert_in_progress()
    return render(request, "alert_manager/event_list.html", {
        "page": page, "include_tests": include_tests, "status": status, "statuses": AlertEvent.Status.choices,
        "in_progress": in_progress,
        "in_progress_activity": selectors.alert_event_activity(in_progress) if in_progress else None,
        "unattached": selectors.alert_unattached_list(limit=20),
        "counts": selectors.pipeline_counts(),
    })


@role_required(ASTRONOMER)
def event_detail(request, pk: int):
    event = selectors.alert_event_get(event_id=pk)
    if event is None:
        raise Http404("no such alert event")
    notices = [{"alert": alert, "raw": _raw_text(alert.raw_xml), "params": json.dumps(alert.params, indent=1)}
               for alert in event.notices.all()]
    sequences = event.request.sequences.all() if event.request else []
    return render(request, "alert_manager/event_detail.html", {
        "event": event, "activity": selectors.alert_event_activity(event), "notices": notices, "sequences": sequences,
        "images": selectors.alert_event_images(event=event),
        "tiles": selectors.alert_event_tiles(event=event) if event.tiles else [],
        "live_version": selectors.alert_event_live_version(event_id=event.pk),
    })


@role_required(ASTRONOMER)
def event_live(request, pk: int):
    """The event page's version (polled by static/pyros/live.js)."""
    version = selectors.alert_event_live_version(event_id=pk)
    if version is None:
        raise Http404("no such alert event")
    return JsonResponse({"version": version})


@role_required(ASTRONOMER)
def event_tiles_png(request, pk: int):
    """The event's sky map (or error circle) with its tiles, observed ones filled (drawn here, cached)."""
    event = AlertEvent.objects.filter(pk=pk).first()
    png = selectors.alert_event_tiles_png(event=event) if event is not None and event.tiles else None
    if png is None:
        raise Http404("no tiles for this event")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=60"
    return response


@role_required(ASTRONOMER)
def alert_detail(request, pk: int):
    alert = selectors.alert_get(alert_id=pk)
    if alert is None:
        raise Http404("no such packet")
    return render(request, "alert_manager/alert_detail.html", {
        "alert": alert, "raw": _raw_text(alert.raw_xml), "params": json.dumps(alert.params, indent=1),
    })


@role_required(OPERATOR)
def send_test_packet(request):
    corpus = selectors.corpus_packets(roles=("observation", "test"))
    if request.method == "POST":
        upload = request.FILES.get("packet")
        choice = request.POST.get("corpus_file", "")
        if upload is not None:
            if upload.size > MAX_PACKET_BYTES:
                messages.error(request, f"The file is larger than {MAX_PACKET_BYTES} bytes.")
                return redirect("alert_manager:send_test")
            raw = upload.read()
        elif choice:
            raw = selectors.corpus_packet_bytes(file=choice)
            if raw is None:
                messages.error(request, "Unknown corpus packet.")
                return redirect("alert_manager:send_test")
        else:
            messages.error(request, "Pick a packet from the corpus or upload a file.")
            return redirect("alert_manager:send_test")
        try:
            response = services.packet_send_to_broker(raw=raw, fresh=request.POST.get("fresh") == "on",
                                                      to_zenith=request.POST.get("zenith") == "on")
        except VOEventRejected as exc:
            messages.error(request, f"Not sent: {exc.reason}")
        except VTPError as exc:
            messages.error(request, f"Comet broker unreachable: {exc}")
        else:
            if response.ack:
                messages.success(request, f"Comet accepted the packet ({response.message}, "
                                          f"{response.elapsed_s * 1000:.0f} ms). It appears below within a second.")
                return redirect("alert_manager:event_list")
            messages.warning(request, f"Comet refused the packet: {response.message}")
        return redirect("alert_manager:send_test")
    return render(request, "alert_manager/send_test.html", {
        "corpus": corpus, "comet_port": settings.PYROS_COMET_PORT, "kafka_corpus": selectors.kafka_corpus_messages(),
        "kafka_bootstrap": settings.PYROS_KAFKA_BOOTSTRAP})


@require_POST
@role_required(OPERATOR)
def send_test_kafka(request):
    """Publish a stored message (or an uploaded one, to the topic given) to the local Kafka cluster."""
    from alert_manager.kafka_consumer import KafkaPublishError
    from alert_manager.notices_json import MAX_MESSAGE_BYTES

    upload = request.FILES.get("message")
    choice = request.POST.get("kafka_file", "")
    topic = request.POST.get("topic", "").strip()
    if upload is not None:
        if upload.size > MAX_MESSAGE_BYTES:
            messages.error(request, f"The file is larger than {MAX_MESSAGE_BYTES} bytes.")
            return redirect("alert_manager:send_test")
        if not topic:
            messages.error(request, "Give the topic of the uploaded message.")
            return redirect("alert_manager:send_test")
        raw = upload.read()
    elif choice:
        found = selectors.kafka_corpus_message(file=choice)
        if found is None:
            messages.error(request, "Unknown corpus message.")
            return redirect("alert_manager:send_test")
        corpus_topic, raw = found
        topic = topic or corpus_topic
    else:
        messages.error(request, "Pick a message from the Kafka corpus or upload a file.")
        return redirect("alert_manager:send_test")
    try:
        partition, offset = services.packet_publish_to_kafka(raw=raw, topic=topic)
    except (ValueError, KafkaPublishError) as exc:
        messages.error(request, f"Not published: {exc}")
        return redirect("alert_manager:send_test")
    messages.success(request, f"Published to {topic}[{partition}]@{offset}: the Kafka intake stores and processes it "
                              "within a second (see Alert streams).")
    return redirect("alert_manager:event_list")


@role_required(OPERATOR)
def strategy_list(request):
    strategies = list(selectors.strategy_list())
    for strategy in strategies:
        strategy.is_last_triggering = selectors.strategy_is_last_triggering(strategy=strategy)
    return render(request, "alert_manager/strategy_list.html", {
        "strategies": strategies, "alarms": selectors.strategy_alarms(),
        "can_edit_templates": has_role(request.user, ADMINISTRATOR)})


@require_POST
@role_required(OPERATOR)
def strategy_switch(request, pk: int):
    strategy = get_object_or_404(Strategy, pk=pk)
    active = request.POST.get("active") == "1"
    if not active and selectors.strategy_is_last_triggering(strategy=strategy) and request.POST.get("confirmed") != "1":
        messages.error(request, f"{strategy.name!r} is the only active strategy that triggers observations: "
                                "deactivating it means GRB alerts are ignored. Tick the confirmation to do it anyway.")
        return redirect("alert_manager:strategy_list")
    services.strategy_activate(strategy=strategy, active=active)
    messages.success(request, f"Strategy {strategy.name!r} {'activated' if active else 'deactivated'}.")
    return redirect("alert_manager:strategy_list")


@require_http_methods(["GET", "POST"])
@role_required(ADMINISTRATOR)
def strategy_template_edit(request, pk: int):
    """The strategy's request template in a form (sequences and exposure rows); the JSON stays read-only."""
    from alert_manager.services.strategy_admin import StrategyTemplateInvalid, strategy_template_save
    from alert_manager.strategies import active_site, default_detector, equipment_filters
    from alert_manager.strategy_forms import StrategyTemplateForm, blank_block

    strategy = get_object_or_404(Strategy, pk=pk)
    status = 200
    if request.method == "POST":
        form = StrategyTemplateForm(data=request.POST)
        if form.is_valid():
            try:
                strategy_template_save(strategy=strategy, template=form.template(), by=request.user.email)
            except StrategyTemplateInvalid as exc:
                form.add_problems(exc.problems, exc.errors)
            else:
                messages.success(request, f"Template of {strategy.name!r} saved: the next burst it matches is "
                                          "observed with it.")
                return redirect("alert_manager:strategy_list")
        status = 400
        messages.error(request, "Not saved: see the fields in red. The strategy keeps its previous template.")
    else:
        form = StrategyTemplateForm(template=strategy.template)
    equipment = equipment_filters()
    new_block = blank_block()
    _annotate_rows([*form.blocks, new_block], equipment)
    return render(request, "alert_manager/strategy_template_form.html", {
        "strategy": strategy, "form": form, "equipment": equipment, "blocks": form.blocks,
        "new_block": new_block, "new_row": new_block.rows[0],
        "template_json": json.dumps(strategy.template, indent=2, ensure_ascii=False),
        "detector_names": sorted(name for name in equipment if name),
        "default_detector": getattr(default_detector(active_site()), "name", ""),
    }, status=status)


def _annotate_rows(blocks: list, equipment: dict[str, list[str]]) -> None:
    """What the page shows in each exposure row: its current values and its detector's filter options."""
    from alert_manager.strategy_forms import filter_choices

    for block in blocks:
        for row in block.rows:
            detector = (row.form["detector"].value() or "").strip()
            current = (row.form["filter"].value() or "").strip()
            row.detector_value = detector
            row.detector_known = detector in equipment
            row.filter_value = current
            row.filter_options = filter_choices(equipment, detector, current)


@role_required(ASTRONOMER)
def streams(request):
    """Alert streams: each source (GCN Kafka, Comet VTP) with its health; operators choose the Kafka topics."""
    from alert_manager.kafka_consumer import DEFAULT_TOPICS, HEARTBEAT_TOPIC

    kafka = selectors.kafka_stream_status()
    snapshot = kafka.detail.get("snapshot") or {}
    chosen = kafka.detail.get("topics_chosen") or []
    known = list(dict.fromkeys([*DEFAULT_TOPICS, *chosen, *(t["topic"] for t in snapshot.get("topics", []))]))
    known = [t for t in known if t != HEARTBEAT_TOPIC]
    return render(request, "alert_manager/streams.html", {
        "kafka": kafka, "snapshot": snapshot, "vtp": selectors.vtp_stream_status(),
        "known_topics": known, "chosen": set(chosen or DEFAULT_TOPICS), "env_topics": settings.PYROS_KAFKA_TOPICS_ENV,
        "heartbeat_topic": HEARTBEAT_TOPIC,
    })


@require_POST
@role_required(OPERATOR)
def streams_topics(request):
    """Operators choose the GCN Kafka topics; the alert-kafka process re-subscribes within seconds."""
    from alert_manager.kafka_consumer import KafkaConfigError, normalize_topics

    topics = [t.strip() for t in request.POST.getlist("topics") if t.strip()]
    extra = request.POST.get("extra", "").replace(",", " ").split()
    try:
        chosen = [t for t in normalize_topics([*topics, *extra]) if t != "gcn.heartbeat"]
    except KafkaConfigError as exc:
        messages.error(request, f"Not saved: {exc}")
        return redirect("alert_manager:streams")
    if not chosen:
        messages.error(request, "Not saved: choose at least one topic (PyROS would receive no alert).")
        return redirect("alert_manager:streams")
    services.kafka_topics_choose(topics=chosen, by=request.user)
    messages.success(request, f"{len(chosen)} topic(s) saved; the Kafka intake subscribes to them within seconds.")
    return redirect("alert_manager:streams")
