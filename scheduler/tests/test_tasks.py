"""The make_schedule task: its name and queue, keyword-only arguments, and a real worker on `scheduling`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyros.celery import app
from pyrosapp import models as m
from scheduler.tasks import make_schedule
from scheduler.tests.test_services import add_sequence, night  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]


def test_make_schedule_is_routed_to_the_scheduling_queue():
    assert make_schedule.name == "pyros.scheduler.make_schedule"
    route = app.amqp.router.route({}, make_schedule.name, args=(), kwargs={"reason": "x"})
    assert route["queue"].name == "scheduling"


def test_make_schedule_takes_keyword_arguments_only():
    with pytest.raises(TypeError):
        make_schedule.run("positional reason")


@pytest.mark.django_db
def test_make_schedule_plans_and_reports(night):  # noqa: F811
    add_sequence("M45")
    result = make_schedule.run(reason="dusk")
    json.dumps(result)  # a JSON result, as the JSON-only Celery config requires
    assert result["planned"] == 1 and result["skipped"] == ""
    assert m.Schedule.objects.get(pk=result["schedule_id"]).trigger == "dusk"


@pytest.mark.slow
def test_a_worker_consuming_only_scheduling_runs_it(tmp_path):
    """Through the embedded broker: sent by name, picked up by a worker listening on `scheduling` only."""
    env = {**os.environ, "CELERY_BROKER_URL": "filesystem://", "PYROS_VAR_DIR": str(tmp_path / "var"),
           "DJANGO_SETTINGS_MODULE": "pyros.settings", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=240)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "pyros", "worker", "-Q", "scheduling", "-P", "solo",
         "--without-gossip", "--without-mingle", "-n", f"sched-{os.getpid()}@localhost", "--loglevel", "WARNING"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        code = ("import django, json; django.setup();"
                "from scheduler.tasks import make_schedule;"
                "r = make_schedule.apply_async(kwargs={'reason': 'routing test'});"
                "print(json.dumps(r.get(timeout=60)))")
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=90)
        assert out.returncode == 0, out.stderr[-2000:]
        # The worker ran it against its (empty) database: no active site, nothing planned.
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {
            "schedule_id": None, "skipped": "no active site", "planned": 0, "rejected": 0, "wall_s": 0.0}
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
