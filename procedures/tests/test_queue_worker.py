"""The queue on real processes: the manager and its worker, the INDI simulators, the test database."""

from __future__ import annotations

import os
import signal
import time

import pytest

from common.testing import scaled_s, wait_until
from common.testing import test_database_url as database_url
from procedures import services
from procedures.models import QueueItem, QueueState
from procedures.testing import queue_manager
from pyrosapp.models import Image, ObservatoryState

pytestmark = [pytest.mark.slow]

SLOW = '''
import time
from procedures.sdk import procedure, ProcedureError

@procedure(timeout_s=60, sky="none")
def long_exposure(ctx, *, exposure_s: float = 30.0):
    """One long dark."""
    ctx.set_progress(0, 1, "exposing")
    ctx.expose(exposure_s, frame_type="dark")
    ctx.set_progress(1, 1, "done")

@procedure(timeout_s=60, sky="none")
def raises(ctx, *, what: str = "boom"):
    """Fails."""
    ctx.log.info("about to fail")
    raise ProcedureError(what)

@procedure(timeout_s=2, sky="none")
def hangs(ctx):
    """Ignores every abort (a C call that never returns)."""
    while True:
        time.sleep(0.5)

@procedure(timeout_s=60, sky="none")
def darks(ctx, *, n: int = 2, exposure_s: float = 0.1):
    """A few short darks."""
    for i in range(n):
        ctx.expose(exposure_s, frame_type="dark")
        ctx.set_progress(i + 1, n)
    return {"frames": n}
'''


@pytest.fixture
def queue_env(night_observatory, procedures_dir, tmp_path, settings):
    """The simulators, a procedures folder with test modules loaded, the observatory in manual mode, and the
    manager running (queue started)."""
    seed, port = night_observatory
    (procedures_dir / "slow.py").write_text(SLOW)
    services.procedures_reload(directory=procedures_dir)
    ObservatoryState.objects.update(mode="manual")
    env = {"PYROS_PROCEDURES_DIR": str(procedures_dir), "PYROS_INDI_HOST": "127.0.0.1",
           "PYROS_INDI_PORT": str(port), "PYROS_DATA_DIR": str(settings.PYROS_DATA_DIR),
           "PYROS_QUEUE_ABORT_GRACE_S": "5"}
    log_path = tmp_path / "manager.log"
    ctx = {"env": env, "log": log_path, "port": port, "dir": procedures_dir}
    with queue_manager(database_url=database_url(), env=env, log_path=log_path) as proc:
        ctx["proc"] = proc
        services.queue_start(by="test")
        wait_until(lambda: QueueState.objects.get().env_status == "idle", timeout_s=scaled_s(60),
                   what="worker environment open")
        yield ctx


def _item(uid) -> QueueItem:
    return QueueItem.objects.get(uid=uid)


def _ended(uid, timeout_s: float) -> QueueItem:
    return wait_until(lambda: (i := _item(uid)).status in QueueItem.ENDED and i, timeout_s=timeout_s,
                      what=f"item {uid} ended")


def test_focus_sweep_finds_the_best_focus_with_its_v_curve(queue_env):
    from common.testing import zenith_target
    from devices.simulators.control import best_focus
    from pyrosapp.models import Site

    best = best_focus("127.0.0.1", queue_env["port"])
    ra, dec = zenith_target(Site.objects.get(is_active=True))
    item = services.queue_item_add(procedure="focus_sweep", params={
        "center": int(best) + 120, "half_width_steps": 360, "points": 7, "exposure_s": 0.5, "ra_deg": ra,
        "dec_deg": dec}, by="test")
    done = _ended(item.uid, scaled_s(120))
    assert done.status == "completed", done.traceback
    result = done.published["result"]
    assert abs(result["best_focus"] - best) < 40, (result, best)
    assert len(result["v_curve"]) >= 6
    fwhm = dict(result["v_curve"])
    assert fwhm[min(fwhm)] > result["fwhm_at_best_arcsec"] and fwhm[max(fwhm)] > result["fwhm_at_best_arcsec"]
    assert Image.objects.filter(file_path__contains="_focus_").count() == 7
    assert any("best focus" in line[2] for line in done.log)


def test_abort_mid_exposure_stops_within_a_second(queue_env):
    item = services.queue_item_add(procedure="long_exposure", params={"exposure_s": 30}, by="test")
    wait_until(lambda: _item(item.uid).progress_message == "exposing", timeout_s=scaled_s(20), what="exposing")
    time.sleep(0.5)
    t0 = time.monotonic()
    services.queue_abort(by="test")
    done = _ended(item.uid, scaled_s(10))
    assert time.monotonic() - t0 < scaled_s(1.0)
    assert done.status == "aborted" and "operator" in done.message
    assert ObservatoryState.objects.get().progress == {}  # the telescope is given back


def test_a_failing_procedure_is_failed_with_its_traceback_and_the_queue_goes_on(queue_env):
    bad = services.queue_item_add(procedure="raises", params={"what": "no stars"}, by="test")
    good = services.queue_item_add(procedure="darks", params={"n": 2}, by="test")
    failed = _ended(bad.uid, scaled_s(20))
    assert failed.status == "failed" and failed.message == "no stars"  # the operator's message, alone
    assert "Traceback" in failed.traceback and "raise ProcedureError(what)" in failed.traceback
    done = _ended(good.uid, scaled_s(30))
    assert done.status == "completed" and done.published["result"] == {"frames": 2}


def test_a_hung_procedure_is_killed_at_its_timeout_and_the_queue_goes_on(queue_env):
    hung = services.queue_item_add(procedure="hangs", by="test")
    after = services.queue_item_add(procedure="darks", params={"n": 1}, by="test")
    done = _ended(hung.uid, scaled_s(15))
    assert done.status == "failed" and "timeout of 2 s" in done.message
    assert (done.ended_at - done.started_at).total_seconds() < scaled_s(4)
    assert _ended(after.uid, scaled_s(60)).status == "completed"  # in a new worker


def test_an_alert_pre_empts_a_procedure_of_a_block(queue_env):
    from majordome.controls import observatory_point_now
    from pyrosapp.models import Site

    ObservatoryState.objects.update(mode="automatic")
    services.queue_block(minutes=30, by="test")
    item = services.queue_item_add(procedure="long_exposure", params={"exposure_s": 30}, by="test")
    wait_until(lambda: _item(item.uid).progress_message == "exposing", timeout_s=scaled_s(20), what="exposing")
    from majordome.device_link import get_observatory

    site = Site.objects.get(is_active=True)
    get_observatory()  # this process's INDI connection (the alerts worker keeps one open)
    t0 = time.monotonic()
    assert observatory_point_now(ra_deg=10.0, dec_deg=site.latitude_deg - 10, reason="alert GRB test")
    done = _ended(item.uid, scaled_s(10))
    assert time.monotonic() - t0 < scaled_s(1.5)
    assert done.status == "stopped" and "pre-empted: alert GRB test" in done.message
    assert ObservatoryState.objects.get().progress.get("kind") != "procedure"


def test_the_queue_survives_a_restart_of_every_process(queue_env, tmp_path):
    long = services.queue_item_add(procedure="long_exposure", params={"exposure_s": 30}, by="test")
    waiting = [services.queue_item_add(procedure="darks", params={"n": n}, by="test") for n in (1, 2)]
    wait_until(lambda: _item(long.uid).status == "running", timeout_s=scaled_s(20), what="running")
    manager = queue_env["proc"]
    worker_pid = QueueState.objects.get().env_pid
    os.kill(manager.pid, signal.SIGKILL)
    manager.wait(10)
    if worker_pid:
        try:
            os.kill(worker_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert [i.uid for i in QueueItem.objects.filter(status="queued")] == [w.uid for w in waiting]
    with queue_manager(database_url=database_url(), env=queue_env["env"], log_path=tmp_path / "again.log"):
        cut = _ended(long.uid, scaled_s(20))
        assert cut.status == "failed" and "restarted" in cut.message
        for w in waiting:  # the queue was started: it goes on by itself
            assert _ended(w.uid, scaled_s(60)).status == "completed"
