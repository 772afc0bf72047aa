"""The procedures page: operators queue, reorder, start, pause, abort and reload; astronomers watch. The page
draws itself from the REST API (procedures/static/procedures/queue.js), so web, API and CLI are one."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render

from procedures import selectors
from user_manager.roles import ASTRONOMER, is_operator, role_required


@role_required(ASTRONOMER)
def queue_page(request):
    return render(request, "procedures/queue.html", {"operator": is_operator(request.user),
                                                     "procedures": selectors.procedure_list()})


@role_required(ASTRONOMER)
def item_page(request, uid):
    """One item: its outcome, its log and, for a flow, its steps as a live tree (Recover for operators)."""
    item = selectors.item_detail(uid)
    if item is None:
        raise Http404(f"no queue item {uid}")
    return render(request, "procedures/item.html", {"item": item, "operator": is_operator(request.user)})
