"""Pages of the scheduler (current plan, history, replan, simulation) and its REST API: thin, selectors
and services do the work."""

from __future__ import annotations

import logging

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from pyrosapp.models import Schedule
from scheduler import selectors, services
from scheduler.serializers import ScheduleCurrentSerializer
from scheduler.simulate import NightFileError
from user_manager.roles import ASTRONOMER, OPERATOR, IsValidatedUser, has_role, role_required

log = logging.getLogger("pyros.scheduler")


def _schedule_context(request: HttpRequest, schedule: Schedule | None) -> dict:
    if schedule is None:
        return {"schedule": None, "can_replan": has_role(request.user, OPERATOR)}
    return {
        "schedule": schedule,
        "planned": list(selectors.schedule_planned_entries(schedule)),
        "rejected": list(selectors.schedule_rejected_entries(schedule)),
        "timeline": selectors.schedule_timeline_data(schedule),
        "can_replan": has_role(request.user, OPERATOR),
    }


@require_GET
@role_required(ASTRONOMER)
def schedule_current_page(request: HttpRequest) -> HttpResponse:
    context = _schedule_context(request, selectors.schedule_current())
    return render(request, "scheduler/current.html", {**context, "is_current_page": True,
                                                      "live_version": selectors.schedule_live_version()})


@require_GET
@role_required(ASTRONOMER)
def schedule_live(request: HttpRequest) -> JsonResponse:
    """The current schedule page's version (polled by static/pyros/live.js, which reloads the page on a change)."""
    return JsonResponse({"version": selectors.schedule_live_version()})


@require_GET
@role_required(ASTRONOMER)
def schedule_detail_page(request: HttpRequest, pk: int) -> HttpResponse:
    schedule = selectors.schedule_get(pk)
    if schedule is None:
        raise Http404("No such schedule.")
    return render(request, "scheduler/current.html", {**_schedule_context(request, schedule),
                                                      "is_current_page": False})


@require_GET
@role_required(ASTRONOMER)
def schedule_history_page(request: HttpRequest) -> HttpResponse:
    schedules = selectors.schedule_list().annotate(
        planned_count=Count("entries", filter=Q(entries__status="planned")),
        rejected_count=Count("entries", filter=Q(entries__status="rejected")))
    page = Paginator(schedules, 50).get_page(request.GET.get("page"))
    return render(request, "scheduler/history.html", {"page": page})


@require_POST
@role_required(OPERATOR)
def schedule_replan(request: HttpRequest) -> HttpResponse:
    services.schedule_request_replan(reason=f"replan asked by {request.user.email}", delay_s=0.0)
    messages.success(request, "A new plan was requested: it appears here within a few seconds, by itself.")
    return redirect("scheduler:current")


class NightFileForm(forms.Form):
    night_file = forms.FileField(label="Night file (JSON)",
                                 help_text="Same format as the shared scheduling sets set_N*.json: meta.site, "
                                           "meta.night, meta.slew_model and a list of sequences.")


@require_http_methods(["GET", "POST"])
@role_required(ASTRONOMER)
def schedule_simulate_page(request: HttpRequest) -> HttpResponse:
    context: dict = {"max_mb": services.SIMULATION_MAX_BYTES / 1e6}
    status = 200
    if request.method == "POST":
        form = NightFileForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["night_file"]
            try:
                # Read one byte more than allowed: enough to know it is too big, without reading it all.
                content = upload.read(services.SIMULATION_MAX_BYTES + 1)
                document, result = services.schedule_simulate_upload(content=content)
            except NightFileError as exc:
                form.add_error("night_file", str(exc))
                status = 400
            else:
                context.update(result=result, file_name=upload.name,
                               timeline=selectors.simulation_timeline_data(document, result),
                               rejected=sorted(result["rejected"].items()))
        else:
            status = 400
    else:
        form = NightFileForm()
    context["form"] = form
    return render(request, "scheduler/simulate.html", context, status=status)


class ScheduleCurrentAPIView(APIView):
    """The schedule in force: planned entries (tsp/tep, UTC) and rejected sequences with their reasons."""

    permission_classes = [IsAuthenticated, IsValidatedUser]
    serializer_class = ScheduleCurrentSerializer

    @extend_schema(responses={200: ScheduleCurrentSerializer,
                              404: OpenApiResponse(description="No schedule yet (JSON with a `detail` message)")})
    def get(self, request, *args, **kwargs) -> Response:
        schedule = selectors.schedule_current()
        if schedule is None:
            return Response({"detail": "No schedule yet: the scheduler has not planned a night for the active "
                                       "site."}, status=404)
        return Response(ScheduleCurrentSerializer(schedule).data)
