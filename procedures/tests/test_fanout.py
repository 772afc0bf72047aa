"""Fan-out to the Celery workers (procedures/fanout.py, the analyzer's plate_solve / measure_focus tasks):
a real worker process and a real caller process (a procedure context in it) on the embedded broker, and
on RabbitMQ when it is there (required in CI); each test on a queue of its own, so that no other worker on
the same broker takes its tasks."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.testing import scaled_s, wait_until
from devices.testing import stop_process
from procedures import fanout
from procedures.context import ProcedureContext, RunControl
from procedures.sdk import ProcedureError
from procedures.testing import celery_worker

REPO = Path(__file__).resolve().parents[2]
SEEING = (1.5, 3.0)  # two frames, alternating in the group: the results must follow the order of the values

# The caller: a procedure context (as the worker builds it) that fans out, in its own process.
CALLER = r'''
import json, logging, os, sys, time
import django
django.setup()
from procedures.context import ProcedureContext, RunControl
from procedures.sdk import ProcedureError
job = json.loads(sys.argv[1])
if job.get("register"):
    from procedures import fanout
    fanout.register(*job["register"])
control = RunControl(item_id=0)
ctx = ProcedureContext(control=control, observatory=None, item_uid="caller", procedure="fanout-test",
                       logger=logging.getLogger("pyros.procedures.fanout-test"))
t0 = time.monotonic()
out = {}
try:
    out["results"] = ctx.group(job["task"], job["values"], queue=job["queue"], timeout_s=job["timeout_s"])
except ProcedureError as exc:
    out["error"] = str(exc)
out["elapsed_s"] = time.monotonic() - t0
if job.get("also_bad_call"):  # a task that raises on the worker: a failed task, with the worker's reason
    try:
        ctx.run(job["task"], "one", "two", queue=job["queue"], timeout_s=job["timeout_s"], publish_as="")
    except ProcedureError as exc:
        out["bad_call"] = str(exc)
out["snapshot"] = control.snapshot()
print("RESULT " + json.dumps(out), flush=True)
'''


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """A data folder with two star fields of different seeing."""
    from devices.sky import SkyConditions, render_frame, write_fits

    data = tmp_path_factory.mktemp("fanout-data")
    for seeing in SEEING:
        pixels, header = render_frame(ra_deg=150.0, dec_deg=30.0, exposure_s=10.0, filter_name="R",
                                      when_utc=datetime(2026, 3, 1, 22, 0, tzinfo=UTC), seed=3,
                                      conditions=SkyConditions(seeing_fwhm_arcsec=seeing))
        (data / f"seeing_{seeing}.fits").write_bytes(write_fits(pixels, header))
    return data


def _brokers() -> list:
    return [pytest.param("filesystem", id="filesystem"),
            pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.services)]


@pytest.fixture
def broker_env(request, tmp_path) -> dict:
    """The environment of the worker and the caller: one broker, one result backend, one data folder."""
    if request.param == "rabbitmq":
        url = request.getfixturevalue("rabbitmq_url")
        return {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": "rpc://", "PYROS_VAR_DIR": str(tmp_path / "var")}
    return {"CELERY_BROKER_URL": "filesystem://", "CELERY_RESULT_BACKEND": "", "PYROS_VAR_DIR": str(tmp_path / "var")}


def _env(broker_env: dict, frames: Path) -> dict:
    env = {**os.environ, **broker_env, "DJANGO_SETTINGS_MODULE": "pyros.settings", "PYROS_DATA_DIR": str(frames)}
    if not env["CELERY_RESULT_BACKEND"]:
        del env["CELERY_RESULT_BACKEND"]  # the embedded default: file:// under PYROS_VAR_DIR
    return env


def _caller(env: dict, job: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CALLER, json.dumps(job)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _answer(caller: subprocess.Popen, timeout_s: float) -> dict:
    out, err = caller.communicate(timeout=timeout_s)
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    assert line, f"the caller printed no result (exit {caller.returncode}):\n{err[-3000:]}"
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
@pytest.mark.parametrize("broker_env", _brokers(), indirect=True)
def test_a_group_of_20_tasks_over_a_real_worker_returns_20_results_in_order(broker_env, frames, tmp_path):
    env = _env(broker_env, frames)
    queue = f"analysis-fanout-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    values = [f"seeing_{SEEING[i % 2]}.fits" for i in range(20)]
    worker = celery_worker(env, queue, tmp_path / "worker.log", concurrency=4)
    try:
        caller = _caller(env, {"task": "measure_focus", "values": values, "queue": queue,
                               "timeout_s": scaled_s(120), "also_bad_call": True})
        answer = _answer(caller, scaled_s(180))
    finally:
        stop_process(worker, 15)
    assert "error" not in answer, (answer["error"], (tmp_path / "worker.log").read_text()[-3000:])
    results = answer["results"]
    assert len(results) == 20 and [r["image"] for r in results] == values
    assert all(r["status"] == "ok" and r["n_sources"] > 20 for r in results)
    for r, value in zip(results, values, strict=True):  # each result belongs to its own frame
        seeing = float(value.removeprefix("seeing_").removesuffix(".fits"))
        assert abs(r["fwhm_arcsec"] - seeing) < 0.35 * seeing, (value, r)
    snapshot = answer["snapshot"]
    assert snapshot["published"]["measure_focus"] == results  # the caller's published data
    assert (snapshot["current"], snapshot["total"]) == (20.0, 20.0)
    assert "measure_focus: 20 of 20 done" in snapshot["message"]
    assert answer["bad_call"].startswith('pyros.analyzer.measure_focus("one", "two") [')
    # the worker's name when Celery reported which worker had it (not always for a call refused before it ran)
    assert re.search(r"failed on (its worker|analysis-fanout-\S+@localhost): TypeError: measure_focus\(\) takes 1 "
                     r"positional argument", answer["bad_call"]), answer["bad_call"]


@pytest.mark.slow
@pytest.mark.parametrize("broker_env", _brokers(), indirect=True)
def test_a_worker_killed_mid_task_fails_the_wait_with_a_clear_error_within_its_time_limit(broker_env, frames,
                                                                                          tmp_path):
    env = _env(broker_env, frames)
    queue = f"analysis-fanout-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "worker.log"
    # Tasks that hold the worker 2 s each, one at a time: killed while the second one runs (its start seen in
    # the log), the worker certainly has it in its hands.
    worker = celery_worker(env, queue, log_path, concurrency=1, include="procedures.tests.fanout_tasks")
    timeout_s = scaled_s(15)
    try:
        wait_until(lambda: "ready" in log_path.read_text(errors="replace"), timeout_s=scaled_s(60),
                   what="celery worker ready")
        caller = _caller(env, {"task": "hold", "values": [2.0] * 6, "queue": queue, "timeout_s": timeout_s,
                               "register": ["hold", "pyros.tests.hold"]})
        # killed once the second task runs (its start is in the result backend, where the caller reads it)
        wait_until(lambda: log_path.read_text(errors="replace").count("holding the worker") >= 2,
                   timeout_s=scaled_s(60), what="the second task running")
        time.sleep(0.2)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        answer = _answer(caller, timeout_s + scaled_s(30))
    finally:
        stop_process(worker, 15)
    error = answer.get("error")
    assert error, answer
    assert "pyros.tests.hold task(s) failed" in error and "pyros.tests.hold(2.0) [" in error
    # What the caller saw decides the words: the task's start read from the result backend ("started on <worker>
    # ... the worker was lost"), or, when the worker died before the caller read it (the file backend, a loaded
    # machine: 1 run in 3 here), that no worker delivered it. Either way the wait ends at its deadline.
    assert (f"started on {queue}@localhost" in error and "the worker was lost" in error) or (
        "no result within" in error and "no worker took it" in error), error
    assert answer["elapsed_s"] < timeout_s + scaled_s(3)  # the deadline, a ping, no hang


def test_unknown_task_names_are_refused_before_anything_is_sent():
    control = RunControl(item_id=0)
    ctx = ProcedureContext(control=control, observatory=None, item_uid="x", procedure="t",
                           logger=logging.getLogger("pyros.procedures.fanout-refusals"))
    for name in ("rm_rf", "pyros.majordome.close_and_park", "pyros.common.notify", None):
        with pytest.raises(ProcedureError, match=r"unknown task .*: procedures may send only the registered tasks: "
                                                 r"measure_focus \(pyros.analyzer.measure_focus\), plate_solve"):
            ctx.run(name, 1)
    with pytest.raises(ProcedureError, match="unknown task 'shutdown'"):
        ctx.group("shutdown", [1, 2])
    with pytest.raises(ProcedureError, match="arguments must be JSON values"):
        ctx.run("plate_solve", object())
    with pytest.raises(ProcedureError, match="timeout_s must be a positive number"):
        ctx.group("plate_solve", [1], timeout_s=-1)
    assert fanout._dispatcher is None or not fanout._dispatcher.pending  # nothing was sent
    assert control.snapshot()["published"] == {}


def test_a_call_no_worker_serves_fails_once_it_has_stalled(monkeypatch):
    """No worker consumes the queue: the call fails by itself (no timeout_s given), saying so."""
    from celery import current_app

    monkeypatch.setattr(fanout, "task_time_limit_s", lambda name: 1.0)
    monkeypatch.setattr(fanout, "QUEUE_ALLOWANCE_S", 0.5)
    queue = f"analysis-nobody-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    try:
        with pytest.raises(ProcedureError) as caught:
            fanout.group("measure_focus", ["a.fits", "b.fits"], queue=queue)
    finally:
        with current_app.connection_for_write() as conn:  # leave nothing behind on a shared broker
            conn.default_channel.queue_delete(queue)
    assert time.monotonic() - t0 < scaled_s(6)
    message = str(caught.value)
    assert 'pyros.analyzer.measure_focus("a.fits")' in message
    assert "no task of the call started or ended for 2 s" in message
    assert f"no worker took it (is a Celery worker consuming the '{queue}' queue running?)" in message


def test_the_registered_tasks_exist_with_time_limits_and_go_to_the_analysis_queue():
    from pyros.celery import app, route_task

    for full in fanout.REGISTERED.values():
        task = app.tasks[full]
        assert task.time_limit and task.soft_time_limit and task.soft_time_limit < task.time_limit
        assert task.track_started
        assert route_task(full, (), {}, {}) == {"queue": "analysis"}
        assert fanout.task_queue(full, app) == "analysis"


@pytest.mark.django_db
def test_the_analysis_tasks_measure_a_frame_by_path_and_refuse_paths_outside_the_data_folder(frames, settings):
    from analyzer import tasks

    settings.PYROS_DATA_DIR = frames
    solved = tasks.plate_solve.run(f"seeing_{SEEING[0]}.fits")
    assert solved["solved"] and abs(solved["field"]["ra_deg"] - 150.0) < 0.01 and solved["n_matched"] > 20
    focus = tasks.measure_focus.run(f"seeing_{SEEING[1]}.fits")
    assert abs(focus["fwhm_arcsec"] - SEEING[1]) < 0.35 * SEEING[1]
    outside = tasks.measure_focus.run("../../etc/passwd")
    assert outside["status"] == "failed" and "outside the data directory" in outside["failure_reason"]
    assert tasks.plate_solve.run(999_999)["failure_reason"] == "Image matching query does not exist."


FOCUS_PROCEDURE = '''
from procedures.sdk import procedure

@procedure(timeout_s=300, sky="none")
def focus_frames(ctx, *, frames: list[str] = (), queue: str = "analysis"):
    """Measure frames on the analysis workers."""
    results = ctx.group("measure_focus", frames, queue=queue)
    return {"fwhm_arcsec": [r["fwhm_arcsec"] for r in results]}
'''


@pytest.mark.slow
def test_a_procedure_in_the_real_queue_worker_fans_out_and_gets_its_results(procedures_dir, frames, tmp_path,
                                                                            transactional_db, settings):
    """The queue manager's worker process (its own Celery client) and a Celery worker, on the broker the
    environment names (the embedded one by default, under this test's PYROS_VAR_DIR)."""
    from common.testing import test_database_url
    from procedures import services
    from procedures.models import QueueItem, QueueState
    from procedures.testing import queue_manager
    from pyros.demo import seed_demo
    from pyrosapp.models import ObservatoryState

    seed = seed_demo()
    ObservatoryState.objects.filter(site=seed.site).update(phase="night", safety="safe", mode="manual")
    (procedures_dir / "focus_frames.py").write_text(FOCUS_PROCEDURE)
    services.procedures_reload(directory=procedures_dir)
    queue = f"analysis-fanout-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    env = {"PYROS_PROCEDURES_DIR": str(procedures_dir), "PYROS_DATA_DIR": str(frames),
           "PYROS_VAR_DIR": str(tmp_path / "var"), "PYROS_INDI_HOST": "127.0.0.1", "PYROS_INDI_PORT": "9"}
    worker = celery_worker({**os.environ, "DJANGO_SETTINGS_MODULE": "pyros.settings", "DATABASE_URL": test_database_url(),
                      **env}, queue, tmp_path / "worker.log", concurrency=2)
    values = [f"seeing_{SEEING[i % 2]}.fits" for i in range(6)]
    try:
        with queue_manager(database_url=test_database_url(), env=env, log_path=tmp_path / "manager.log"):
            services.queue_start(by="test")
            item = services.queue_item_add(procedure="focus_frames", params={"frames": values, "queue": queue},
                                           by="test")
            done = wait_until(lambda: (i := QueueItem.objects.get(uid=item.uid)).status in QueueItem.ENDED and i,
                              timeout_s=scaled_s(120), what="focus_frames ended")
            assert QueueState.objects.get().env_status in ("idle", "busy")
    finally:
        stop_process(worker, 15)
    assert done.status == "completed", (done.message, (tmp_path / "manager.log").read_text()[-3000:])
    fwhm = done.published["result"]["fwhm_arcsec"]
    assert len(fwhm) == 6 and all(f < 2.2 for f in fwhm[::2]) and all(f > 2.2 for f in fwhm[1::2])
    assert [r["image"] for r in done.published["measure_focus"]] == values
