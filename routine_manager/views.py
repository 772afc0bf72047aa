"""Web pages of requests (login required by the middleware). Thin: parse, call a service/selector, render."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from analyzer.selectors import images_for_request
from pyrosapp.models import Request, Site
from routine_manager.builder import RequestInvalid
from routine_manager.coordinates import format_utc, parse_dec_deg, parse_ra_deg
from routine_manager.request_json import builder_from_api_data, request_to_data
from user_manager.roles import ASTRONOMER, role_required

from . import forms, lifecycle, selectors, services
from .importers import CSV_COLUMNS, ImportInvalid, parse_batch
from .plots import altitude_figure, request_altitude_plots
from .targets import resolve_target


@role_required(ASTRONOMER)
def request_list(request):
    status = request.GET.get("status", "")
    search = request.GET.get("q", "").strip()
    scope = request.GET.get("scope", "mine")
    program = request.GET.get("program", "")
    queryset = selectors.request_list(user=request.user, status=status if status in Request.Status.values else "",
                                      search=search, mine_only=scope != "all",
                                      program_id=int(program) if program.isdigit() else None)
    page = Paginator(queryset, 25).get_page(request.GET.get("page"))
    return render(request, "routine_manager/request_list.html", {
        "page": page, "status": status, "q": search, "scope": scope, "program": program,
        "statuses": Request.Status.choices, "programs": selectors.programs_for(user=request.user),
    })


def _detectors() -> dict[str, list[str]]:
    return selectors.detector_filters()


def _editor_context(request, state: forms.EditorState, *, draft: Request | None, report=None) -> dict[str, Any]:
    detectors = _detectors()
    first_detector = next(iter(detectors), "")
    blank = forms.blank_sequence(first_detector, None)
    return {
        "state": state, "draft": draft, "report": report,
        "programs": selectors.programs_for(user=request.user),
        "detectors": detectors,
        "seq_template": forms.sequence_row("__S__", blank),
        "album_template": forms.album_row("__S__", "__A__", blank["albums"][0]),
        "plan_template": forms.plan_row("__S__", "__A__", "__P__", blank["albums"][0]["plans"][0]),
    }


def _load_draft(request, pk: int) -> Request:
    draft = selectors.request_get(user=request.user, request_id=pk)
    if draft is None:
        raise Http404("No such request.")
    if not selectors.request_may_change(user=request.user, request=draft):
        raise Http404("No such request.")
    return draft


@role_required(ASTRONOMER)
def request_edit(request, pk: int | None = None):
    """Create (pk None) or edit a draft. Buttons: save draft, check (dry run), submit."""
    draft = _load_draft(request, pk) if pk is not None else None
    if draft is not None and draft.status != lifecycle.DRAFT:
        messages.warning(request, "Only drafts can be edited: clone this request to change it.")
        return redirect("routine_manager:request_detail", pk=draft.pk)
    if request.method != "POST":
        if draft is not None:
            data = request_to_data(draft)
        else:
            programs = selectors.programs_for(user=request.user)
            data = forms.new_request_data(program_id=programs[0].pk if programs else None,
                                          detector=next(iter(_detectors()), ""), now=timezone.now())
        return render(request, "routine_manager/request_form.html",
                      _editor_context(request, forms.editor_state(data), draft=draft))

    data = forms.post_to_data(request.POST)
    action = request.POST.get("action", "save")
    builder = builder_from_api_data(data, owner=request.user)
    if action == "check":
        report = builder.validate()
        return render(request, "routine_manager/request_form.html", _editor_context(
            request, _with_report(forms.editor_state(data, report.errors), report), draft=draft, report=report))
    try:
        saved = builder.save(submit=action == "submit", replace=draft)
    except RequestInvalid as exc:
        messages.error(request, "The request was not saved: fix the fields marked in red."
                       if action != "submit" else "The request was not submitted: fix the fields marked in red.")
        return render(request, "routine_manager/request_form.html",
                      _editor_context(request, forms.editor_state(data, exc.errors), draft=draft), status=400)
    messages.success(request, f"Request “{saved.name}” " + ("submitted." if action == "submit" else "saved as a draft."))
    return redirect("routine_manager:request_detail", pk=saved.pk)


def _with_report(state: forms.EditorState, report) -> forms.EditorState:
    for row, checked in zip(state.sequences, report.sequences, strict=False):
        row.duration_s = checked.duration_s
        row.observable_windows = [[format_utc(a)[:16].replace("T", " "), format_utc(b)[11:16]]
                                  for a, b in checked.observable_windows[:10]]
    return state


@role_required(ASTRONOMER)
def request_detail(request, pk: int):
    found = selectors.request_detail(user=request.user, request_id=pk)
    if found is None:
        raise Http404("No such request.")
    try:
        plots = request_altitude_plots(found)
    except ValueError:  # a site without nights (polar summer) still shows the request
        plots = []
    return render(request, "routine_manager/request_detail.html", {
        "req": found, "plots_json": json.dumps(plots), "plots": plots,
        "live_version": selectors.request_live_version(request_id=found.pk),
        "may_change": selectors.request_may_change(user=request.user, request=found),
        "cancellable": found.status in lifecycle.CANCELLABLE,
        "images": images_for_request(found.pk),
    })


def _changeable_or_404(request, pk: int) -> Request:
    found = selectors.request_get(user=request.user, request_id=pk)
    if found is None:
        raise Http404("No such request.")
    return found


@require_POST
@role_required(ASTRONOMER)
def request_cancel(request, pk: int):
    found = _changeable_or_404(request, pk)
    if not selectors.request_may_change(user=request.user, request=found):
        return HttpResponseForbidden("Only the owner, the program's PI or an operator may cancel this request.")
    try:
        services.request_cancel(request=found, reason=f"cancelled by {request.user.email}")
        messages.success(request, f"Request “{found.name}” cancelled; its unused time went back to the program.")
    except lifecycle.InvalidStateChange:
        messages.error(request, f"This request is {found.get_status_display().lower()}: it cannot be cancelled.")
    return redirect("routine_manager:request_detail", pk=pk)


@require_POST
@role_required(ASTRONOMER)
def request_submit(request, pk: int):
    found = _changeable_or_404(request, pk)
    if not selectors.request_may_change(user=request.user, request=found):
        return HttpResponseForbidden("Only the owner, the program's PI or an operator may submit this request.")
    try:
        services.request_submit(request=found)
        messages.success(request, f"Request “{found.name}” submitted.")
    except RequestInvalid as exc:
        return render(request, "routine_manager/request_form.html", _editor_context(
            request, forms.editor_state(request_to_data(found), exc.errors), draft=found), status=400)
    except lifecycle.InvalidStateChange as exc:
        messages.error(request, str(exc))
    return redirect("routine_manager:request_detail", pk=pk)


@require_POST
@role_required(ASTRONOMER)
def request_clone(request, pk: int):
    found = _changeable_or_404(request, pk)
    try:
        copy = services.request_clone(request=found, owner=request.user)
    except RequestInvalid as exc:
        messages.error(request, "This request cannot be cloned: " + "; ".join(
            f"{path}: {m[0]}" for path, m in list(exc.errors.items())[:3]))
        return redirect("routine_manager:request_detail", pk=pk)
    messages.success(request, "Cloned as a draft: check the windows before submitting.")
    return redirect("routine_manager:request_edit", pk=copy.pk)


@role_required(ASTRONOMER)
def request_import(request):
    context: dict[str, Any] = {"columns": CSV_COLUMNS, "errors": None}
    if request.method == "POST":
        upload = request.FILES.get("file")
        submit = request.POST.get("submit_after") == "on"
        if upload is None:
            context["errors"] = [{"location": "file", "field": "", "message": "Choose a JSON or CSV file."}]
        else:
            try:
                batch = parse_batch(content=upload.read(), filename=upload.name or "",
                                    content_type=upload.content_type or "")
                created = services.requests_import(owner=request.user, batch=batch, submit=submit)
            except ImportInvalid as exc:
                context["errors"] = exc.errors
            else:
                messages.success(request, f"Imported {len(created)} request(s)"
                                 + (" and submitted them." if submit else " as drafts."))
                return redirect("routine_manager:request_list")
        return render(request, "routine_manager/request_import.html", context, status=400)
    return render(request, "routine_manager/request_import.html", context)


@require_GET
@role_required(ASTRONOMER)
def target_resolve(request):
    """A target name to J2000 coordinates: PyROS's offline list, then Sesame when allowed and reachable."""
    name = request.GET.get("name", "").strip()[:100]
    found = resolve_target(name, online=settings.PYROS_NAME_RESOLVER_ONLINE) if name else None
    if found is None:
        where = "PyROS's list of bright objects" + (" nor Sesame" if settings.PYROS_NAME_RESOLVER_ONLINE else "")
        return JsonResponse({"detail": f"{name!r} is neither in {where}: type its RA and Dec."}, status=404)
    return JsonResponse({"name": found.name, "ra_deg": round(found.ra_deg, 6), "dec_deg": round(found.dec_deg, 6),
                         "kind": found.kind, "source": found.source})


def _utc(text: str, default):
    """A form's datetime-local value (no zone: UTC, as the editor says) or ISO 8601 with a zone."""
    parsed = parse_datetime(text.strip()) if text.strip() else None
    if parsed is None:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@require_GET
@role_required(ASTRONOMER)
def target_altitude_preview(request):
    """The altitude curve of a target over its window (the first week) from the active site, before submitting."""
    try:
        ra_deg = parse_ra_deg(request.GET.get("ra", ""))
        dec_deg = parse_dec_deg(request.GET.get("dec", ""))
        min_alt = float(request.GET["min_altitude"]) if request.GET.get("min_altitude") else None
        max_airmass = float(request.GET["max_airmass"]) if request.GET.get("max_airmass") else None
    except (ValueError, TypeError) as exc:
        return JsonResponse({"detail": f"RA/Dec or constraints not understood: {exc}"}, status=400)
    site = Site.objects.filter(is_active=True).first() or Site.objects.first()
    if site is None:
        return JsonResponse({"detail": "no observatory site is configured"}, status=404)
    now = timezone.now()
    start = _utc(request.GET.get("start", ""), now)
    end = _utc(request.GET.get("end", ""), start + timedelta(days=1))
    if end <= start:
        end = start + timedelta(days=1)
    try:
        figure = altitude_figure(site, ra_deg=ra_deg, dec_deg=dec_deg, start=start, end=end,
                                 min_altitude_deg=min_alt, max_airmass=max_airmass if (max_airmass or 0) >= 1 else None,
                                 title=f"{request.GET.get('name') or 'target'} from {site.name}", figure_id="preview")
    except ValueError as exc:  # a site without nights (polar summer)
        return JsonResponse({"detail": str(exc)}, status=400)
    figure["max_altitude_deg"] = max(figure["altitude"]) if figure["altitude"] else None
    return JsonResponse(figure)


@require_GET
@role_required(ASTRONOMER)
def request_live(request, pk: int):
    """The request page's version (polled by static/pyros/live.js)."""
    if selectors.request_get(user=request.user, request_id=pk) is None:
        raise Http404("No such request.")
    return JsonResponse({"version": selectors.request_live_version(request_id=pk)})
