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


# What each action does, asked before it is sent (issue #16: night-changing actions confirm their effect).
EFFECTS = {
    "pause_immediate": "Pause now: the current exposure is aborted and nothing new starts until you press Resume.",
    "stop": "Stop the night: nothing more is observed tonight, the mount parks and the dome closes. "
            "Observing starts again only when you press Resume.",
    "abort": "Abort the current sequence: its exposure stops now and it is not resumed; the plan goes on.",
    "close": "Close the dome and park: this also stops the night (nothing is observed until you press Resume).",
    "calibrate": "Take calibrations now: the telescope takes bias, dark and flat frames; planned sequences wait "
                 "until they are done.",
}


@role_required(OPERATOR)
def operator(request):
    return render(request, "majordome/operator.html", {"status": selectors.observatory_status(),
                                                       "actions": {key: (label, EFFECTS.get(key, ""))
                                                                   for key, (label, _run) in ACTIONS.items()}})


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
