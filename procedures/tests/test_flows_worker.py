"""Flows on real processes: the shipped pointing-model grid on the INDI simulators (plate-solves fanned out to
a real Celery worker), its worker killed with SIGKILL mid-grid, then recovered from the `pyros` CLI: only the
unfinished points are measured again (the frames are counted: no duplicate FITS file, no duplicate Image row);
the same recovered from its page in Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from common.testing import scaled_s, wait_until
from common.testing import test_database_url as database_url
from devices.testing import stop_process
from procedures import services
from procedures.models import QueueItem, QueueState, StepRun
from procedures.testing import celery_worker, queue_manager
from pyrosapp.models import Image, ObservatoryState, Site, User
from pyrosapp.tests.factories import UserFactory

pytestmark = [pytest.mark.slow]


@pytest.fixture
def flow_env(night_observatory, procedures_dir, tmp_path, settings):
    """The simulators, the queue manager (queue started) and a Celery worker for the plate-solves, on a queue
    of its own, all on the embedded broker under this test's PYROS_VAR_DIR."""
    seed, port = night_observatory
    services.procedures_reload(directory=procedures_dir)
    ObservatoryState.objects.update(mode="manual")
    queue = f"analysis-flows-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    env = {"PYROS_PROCEDURES_DIR": str(procedures_dir), "PYROS_INDI_HOST": "127.0.0.1",
           "PYROS_INDI_PORT": str(port), "PYROS_DATA_DIR": str(settings.PYROS_DATA_DIR),
           "PYROS_QUEUE_ABORT_GRACE_S": "5", "PYROS_VAR_DIR": str(tmp_path / "var"),
           "CELERY_BROKER_URL": "filesystem://"}
    full = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "pyros.settings", "DATABASE_URL": database_url()}
    full.pop("CELERY_RESULT_BACKEND", None)  # the embedded default: file:// under PYROS_VAR_DIR
    celery = celery_worker(full, queue, tmp_path / "celery.log", concurrency=2)
    try:
        with queue_manager(database_url=database_url(), env=env, log_path=tmp_path / "manager.log") as proc:
            services.queue_start(by="test")
            wait_until(lambda: QueueState.objects.get().env_status == "idle", timeout_s=scaled_s(60),
                       what="worker environment open")
            yield {"proc": proc, "data": Path(settings.PYROS_DATA_DIR), "queue": queue}
    finally:
        stop_process(celery, 15)


def _ended(uid, timeout_s: float) -> QueueItem:
    return wait_until(lambda: (i := QueueItem.objects.get(uid=uid)).status in QueueItem.ENDED and i,
                      timeout_s=timeout_s, what=f"item {uid} ended")


def _steps(item: QueueItem) -> dict[str, StepRun]:
    return {s.path: s for s in StepRun.objects.filter(run__item=item)}


def _pyros(url: str, token: str, *args) -> subprocess.CompletedProcess:
    env = {"PYROS_URL": url, "PYROS_TOKEN": token, "PATH": "/usr/bin:/bin", "PYROS_CLI_CONFIG": "/nonexistent"}
    return subprocess.run([sys.executable, "-m", "procedures.cli", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def _grid_killed_at_point_4(flow_env) -> QueueItem:
    """The shipped pointing grid (10 points) started, its worker killed with SIGKILL while point 4 exposes."""
    site = Site.objects.get(is_active=True)
    decs = [round(site.latitude_deg - 15), round(site.latitude_deg + 5)]
    item = services.queue_item_add(procedure="pointing_grid", by="test", params={
        "hour_angles_h": [-1.0, -0.5, 0.0, 0.5, 1.0], "declinations_deg": decs, "exposure_s": 1.0, "settle_s": 0,
        "analysis_queue": flow_env["queue"]})
    running = lambda: StepRun.objects.filter(run__item__uid=item.uid, path="grid/4/expose",  # noqa: E731
                                             state="running").exists()
    wait_until(running, timeout_s=scaled_s(120), interval_s=0.05, what="point 4 exposing")
    time.sleep(0.3)  # mid-exposure
    os.kill(QueueState.objects.get().env_pid, signal.SIGKILL)
    cut = _ended(item.uid, scaled_s(20))
    assert cut.status == "failed" and "worker process died" in cut.message
    steps = _steps(cut)
    assert steps["grid/4/expose"].state == "failed" and steps["grid/4/expose"].message.startswith("interrupted")
    assert [steps[f"grid/{i}/expose"].state for i in range(1, 11)] == ["succeeded"] * 3 + ["failed"] + ["pending"] * 6
    assert Image.objects.count() == 3
    return cut


def _ten_points_once(flow_env, cut: QueueItem) -> QueueItem:
    """The recovery of ``cut`` completed with ten frames in all: one FITS file and one Image row per point,
    none taken twice, points 1-3 taken over, the plate-solves done by the Celery worker."""
    recovery = QueueItem.objects.get(recovers=cut)
    done = _ended(recovery.uid, scaled_s(240))
    assert done.status == "completed", (done.message, done.traceback)
    images = list(Image.objects.order_by("pk"))
    files = sorted(p.relative_to(flow_env["data"]).as_posix() for p in flow_env["data"].rglob("*.fits"))
    assert len(images) == 10 and len(files) == 10
    assert sorted(i.file_path for i in images) == files
    steps = _steps(done)
    assert [steps[f"grid/{i}/expose"].reused for i in range(1, 11)] == [True] * 3 + [False] * 7
    assert all(steps[f"grid/{i}/slew"].reused for i in (1, 2, 3)) and steps["prepare"].reused
    expose_images = [steps[f"grid/{i}/expose"].data["image"] for i in range(1, 11)]
    assert sorted(expose_images) == [i.pk for i in images]
    assert done.published["flow"]["reused"] >= 1 + 3 * 2
    assert done.published["of"] == 10 and done.published["solved"] == len(done.published["points"]) >= 8
    assert done.published["rms_after_mean_arcsec"] < 60  # the simulator's pointing is good
    solves = [steps[f"grid/{i}/solve"] for i in range(1, 11)]
    assert sum(1 for s in solves if s.data.get("solved")) == done.published["solved"]
    assert all(s.data.get("method") for s in solves if s.data.get("solved"))  # solved by the Celery worker
    return done


def test_pointing_grid_killed_at_point_4_is_recovered_from_the_cli_without_redoing_points(flow_env, live_server):
    cut = _grid_killed_at_point_4(flow_env)
    token = Token.objects.create(user=UserFactory(role=User.Role.OPERATOR)).key
    r = _pyros(live_server.url, token, "queue", "recover", str(cut.uid)[:8])
    assert r.returncode == 0, r.stderr
    assert "recovery of pointing_grid queued at the front" in r.stdout
    done = _ten_points_once(flow_env, cut)
    r = _pyros(live_server.url, token, "queue", "flow", str(done.uid))
    assert r.returncode == 0 and "(earlier run)" in r.stdout and "grid" in r.stdout
    r = _pyros(live_server.url, token, "queue", "recover", str(done.uid))
    assert r.returncode == 1 and "nothing to recover" in r.stderr


@pytest.mark.browser
def test_pointing_grid_killed_at_point_4_is_recovered_from_its_page(require_chromium, flow_env, page, live_server,
                                                                    client, screenshot_dir):
    cut = _grid_killed_at_point_4(flow_env)
    client.force_login(UserFactory(role=User.Role.OPERATOR))
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                               "url": live_server.url}])
    page.goto(f"{live_server.url}/procedures/items/{cut.uid}/")
    page.wait_for_selector('li[data-path="grid/4/expose"][data-state=failed]', timeout=scaled_s(20) * 1000)
    dialogs = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.click("#recover-btn")
    page.wait_for_selector("#recovery-link", timeout=scaled_s(10) * 1000)
    assert dialogs and "steps that succeeded are not run again" in dialogs[0]
    done = _ten_points_once(flow_env, cut)
    page.click("#recovery-link")
    page.wait_for_url(f"**/procedures/items/{done.uid}/")
    page.wait_for_selector("#item-status:text-is('completed')", timeout=scaled_s(30) * 1000)
    assert "done before" in page.inner_text('li[data-path="grid/3/expose"]')
    assert "done before" not in page.inner_text('li[data-path="grid/4/expose"]')
    page.screenshot(path=str(screenshot_dir / "procedures-pointing-grid-recovered.png"))
