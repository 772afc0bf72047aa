from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from majordome import controls, selectors
from majordome.state_machine import InvalidStateChange
from user_manager.roles import OPERATOR, role_required

ACTIONS = {
    "pause_deferred": ("Pause after the current plan", lambda by: controls.observatory_pause(when="deferred", by=by)),
    "pause_immediate": ("Pause now", lambda by: controls.observatory_pause(when="immediate", by=by)),
    "resume": ("Resume", lambda by: controls.observatory_resume(by=by)),
    "stop": ("Stop the night", lambda by: controls.observatory_stop(by=by)),
    "abort": ("Abort the current sequence", lambda by: controls.observatory_abort(by=by)),
    "close": ("Close the dome and park", lambda by: controls.observatory_close(by=by)),
    "calibrate": ("Take calibrations now", lambda by: controls.observatory_calibrate(by=by)),
}


@role_required(OPERATOR)
def operator(request):
    return render(request, "majordome/operator.html", {"status": selectors.observatory_status(),
                                                       "actions": ACTIONS})


@role_required(OPERATOR)
@require_POST
def control(request, action: str):
    if action not in ACTIONS:
        messages.error(request, f"Unknown action {action!r}.")
        return redirect("majordome:operator")
    label, run = ACTIONS[action]
    try:
        result = run(request.user.email)
    except InvalidStateChange as exc:
        messages.error(request, f"{label}: {exc}")
    else:
        if action == "abort" and result is None:
            messages.warning(request, "No sequence is executing: nothing to abort.")
        else:
            messages.success(request, f"{label}: done.")
    return redirect(request.POST.get("next") or "majordome:operator")
