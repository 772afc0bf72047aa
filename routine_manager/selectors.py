"""Reads of requests: who sees what, lists with filters, the current allocation of a program."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from pyrosapp.models import Allocation, Detector, Request, ScientificProgram, Sequence, User
from user_manager.roles import is_operator


def request_visible_to(*, user: User) -> QuerySet[Request]:
    """Own requests and those of the user's programs (as member or PI); operators and administrators see all."""
    queryset = Request.objects.select_related("owner", "program")
    if is_operator(user):
        return queryset
    return queryset.filter(Q(owner=user) | Q(program__members=user) | Q(program__pi=user)).distinct()


def request_list(*, user: User, status: str = "", program_id: int | None = None, search: str = "",
                 mine_only: bool = False) -> QuerySet[Request]:
    queryset = request_visible_to(user=user)
    if mine_only:
        queryset = queryset.filter(owner=user)
    if status:
        queryset = queryset.filter(status=status)
    if program_id:
        queryset = queryset.filter(program_id=program_id)
    if search:
        queryset = queryset.filter(Q(name__icontains=search) | Q(sequences__target_name__icontains=search)
                                   | Q(sequences__name__icontains=search)).distinct()
    return queryset.order_by("-created")


def request_get(*, user: User, request_id: int) -> Request | None:
    """The request if the user may see it (None otherwise: to them it does not exist)."""
    return request_visible_to(user=user).filter(pk=request_id).first()


def request_detail(*, user: User, request_id: int) -> Request | None:
    return request_visible_to(user=user).filter(pk=request_id).prefetch_related(
        "sequences__albums__detector", "sequences__albums__plans__filter").first()


def request_may_change(*, user: User, request: Request) -> bool:
    """Edit, submit or cancel: the owner, the program's PI, operators and administrators."""
    return request.owner_id == user.pk or request.program.pi_id == user.pk or is_operator(user)


def programs_for(*, user: User) -> QuerySet[ScientificProgram]:
    """Active programs the user may submit to."""
    queryset = ScientificProgram.objects.filter(is_active=True, is_alert_program=False)
    if user.is_superuser or getattr(user, "role", "") == "administrator":
        return queryset
    return queryset.filter(Q(members=user) | Q(pi=user)).distinct()


def allocation_current(*, program: ScientificProgram, now: datetime) -> Allocation | None:
    """The program's allocation for the period containing ``now``."""
    return (Allocation.objects.select_related("period")
            .filter(program=program, period__start__lte=now, period__end__gt=now).first())


def detector_filters() -> dict[str, list[str]]:
    """Detector name -> the names of its filter wheel's filters, in slot order (form choices)."""
    result: dict[str, list[str]] = {}
    for detector in Detector.objects.select_related("filter_wheel").prefetch_related("filter_wheel__filters"):
        wheel = detector.filter_wheel
        result[detector.name] = [f.name for f in wheel.filters.all()] if wheel else []
    return result


def request_live_version(*, request_id: int) -> str:
    """What the request page shows, condensed (the page polls it and redraws when it changes): statuses,
    plans, images and their analyses. Three small queries."""
    from django.db.models import Count, Max, Sum

    from pyrosapp.models import Image

    head = Request.objects.filter(pk=request_id).values_list("status", "status_reason", "updated", "used_s").first()
    sequences = list(Sequence.objects.filter(request_id=request_id).order_by("pk").values_list(
        "pk", "status", "planned_start", "used_s").annotate(done=Sum("albums__plans__images_done")))
    images = Image.objects.filter(sequence__request_id=request_id).aggregate(
        n=Count("pk"), analysed=Max("analysis__updated"))
    return _digest(head, sequences, images)


def _digest(*parts) -> str:
    import hashlib

    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:16]
