"""Supervision under `make run` (scripts/run.py: supervisord): kill -9 of one process restarts it, the others
keep running, and the sequence it was executing resumes and completes with every image exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common import testing
from common.testing import REPO, wait_until
from devices.simulators.control import set_weather
from majordome.selectors import observatory_state
from majordome.tests.test_execution import make_request
from pyrosapp.models import Image, Sequence

pytestmark = [pytest.mark.slow]

PROCESSES = ("safety", "worker-execution", "worker", "beat")


def _supervisorctl(conf: Path, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=20).stdout


def _pids(conf: Path) -> dict[str, int]:
    pids = {}
    for name in PROCESSES:
        out = _supervisorctl(conf, "pid", name).strip()
        pids[name] = int(out) if out.isdigit() and out != "0" else 0
    return pids


def test_run_py_config_restarts_with_backoff_and_reports():
    from scripts.run import procfile, supervisord_config  # noqa: PLC0415

    processes = procfile(REPO / "Procfile")
    assert {"web", "safety", "worker", "worker-execution", "beat", "simulators"} <= set(processes)
    config = supervisord_config(processes, var_dir=Path("/tmp/x"), python="python")
    assert config.count("autorestart=true") == len(processes) + 1
    assert "startretries=5" in config and "[eventlistener:supervision]" in config
    assert "@%%h" in config  # supervisord would read %h as a format


def test_supervisor_events_reports_a_process_that_keeps_crashing(caplog):
    import logging

    from scripts.supervisor_events import CrashCounter, handle  # noqa: PLC0415

    counter = CrashCounter(count=3, window_s=600)
    with caplog.at_level(logging.INFO, logger="pyros.supervision"):
        for pid in (1, 2, 3):
            handle("PROCESS_STATE_EXITED", {"processname": "worker", "expected": "0", "pid": str(pid)}, counter)
        handle("PROCESS_STATE_FATAL", {"processname": "web"}, counter)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("worker crashed (pid 1")
    assert "worker keeps crashing: 3 unexpected exits" in messages[2]
    assert any(r.levelname == "CRITICAL" and "web could not be started" in r.getMessage() for r in caplog.records)


def test_kill_9_of_one_process_restarts_it_and_the_sequence_resumes_once(night_observatory, settings, tmp_path):
    seed, port = night_observatory
    set_weather(port=port, wind_m_s=2, gust_m_s=3, rain_mm_h=0, humidity_pct=40, cloud_cover_pct=0)
    var_dir = tmp_path / "var"
    env = {**os.environ, "DATABASE_URL": testing.test_database_url(), "PYROS_VAR_DIR": str(var_dir),
           "PYROS_INDI_PORT": str(port), "PYROS_DATA_DIR": str(settings.PYROS_DATA_DIR),
           "PYROS_EXECUTOR_STALE_S": "5", "PYROS_MAJORDOME_TICK_S": "1", "PYROS_INSTANCE": f"t{os.getpid()}",
           "DJANGO_SETTINGS_MODULE": "pyros.settings"}
    request, sequence = make_request(seed, plans=(("R", 1.0, 3), ("V", 1.0, 3)))
    state = observatory_state()
    type(state).objects.filter(pk=state.pk).update(preempt_sequence=sequence)
    out = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    run = subprocess.Popen([sys.executable, str(REPO / "scripts" / "run.py"), *PROCESSES], cwd=REPO, env=env,
                           stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    conf = var_dir / "supervisor" / "supervisord.conf"
    try:
        wait_until(lambda: Image.objects.filter(sequence=sequence).exists(), timeout_s=90, interval_s=0.5,
                   what="the sequence started under make run")
        before = _pids(conf)
        assert all(before.values()), before
        os.kill(before["worker-execution"], signal.SIGKILL)
        wait_until(lambda: _pids(conf)["worker-execution"] not in (0, before["worker-execution"]), timeout_s=30,
                   interval_s=0.5, what="worker-execution restarted")
        wait_until(lambda: Sequence.objects.get(pk=sequence.pk).status == "completed", timeout_s=120,
                   interval_s=0.5, what="the sequence resumed and completed")
        # the safety process too: restarted, polls again
        os.kill(before["safety"], signal.SIGKILL)
        wait_until(lambda: _pids(conf)["safety"] not in (0, before["safety"]), timeout_s=30, interval_s=0.5,
                   what="safety restarted")
        killed_at = time.time()
        from datetime import datetime

        wait_until(lambda: datetime.fromisoformat(observatory_state().devices_snapshot["time"]).timestamp()
                   > killed_at + 1, timeout_s=30, interval_s=0.5, what="polls again after the restart")
        after = _pids(conf)
        for name in ("worker", "beat"):
            assert after[name] == before[name], f"{name} was restarted too"
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        try:
            run.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=10)
        out.close()
    images = list(Image.objects.filter(sequence=sequence))
    assert len(images) == 6 and len({(i.plan_id, i.index_in_plan) for i in images}) == 6
    log = (var_dir / "log" / "supervision.log").read_text()
    assert "worker-execution crashed" in log and "safety crashed" in log
