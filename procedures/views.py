"""The procedures page: operators queue, reorder, start, pause, abort and reload; astronomers watch. The page
draws itself from the REST API (procedures/static/procedures/queue.js), so web, API and CLI are one."""

from __future__ import annotations

from django.shortcuts import render

from procedures import selectors
from user_manager.roles import ASTRONOMER, is_operator, role_required


@role_required(ASTRONOMER)
def queue_page(request):
    return render(request, "procedures/queue.html", {"operator": is_operator(request.user),
                                                     "procedures": selectors.procedure_list()})
