"""A real Celery round trip: a worker process, the broker, a result. Through the embedded file-system
broker always, and through RabbitMQ when it is there (required in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _round_trip(tmp_path: Path, broker_url: str, result_backend: str | None = None, *, pool: str = "solo",
                count: int = 1) -> dict:
    env = {**os.environ, "CELERY_BROKER_URL": broker_url, "PYROS_VAR_DIR": str(tmp_path / "var"),
           "DJANGO_SETTINGS_MODULE": "pyros.settings"}
    if result_backend:
        env["CELERY_RESULT_BACKEND"] = result_backend
    queue = "default"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "pyros", "worker", "-Q", queue, "-P", pool, "-c", "2",
         "--without-gossip", "--without-mingle", "-n", f"test-{os.getpid()}@localhost", "--loglevel", "WARNING"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        code = (
            "import django, json; django.setup();"
            "from common.tasks import ping;"
            f"rs = [ping.apply_async(kwargs={{'value': 42}}).get(timeout=60) for _ in range({count})];"
            "print(json.dumps({'result': rs[0], 'results': rs}))"
        )
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=90)
        assert out.returncode == 0, out.stderr[-2000:]
        import json

        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


@pytest.mark.slow
def test_round_trip_through_the_embedded_broker(tmp_path):
    data = _round_trip(tmp_path, "filesystem://")
    assert data["result"]["value"] == 42
    assert data["result"]["pid"] != os.getpid()


@pytest.mark.slow
@pytest.mark.services
def test_round_trip_through_rabbitmq(tmp_path, rabbitmq_url):
    start = time.monotonic()
    data = _round_trip(tmp_path, rabbitmq_url, "rpc://")
    assert data["result"]["value"] == 42
    assert time.monotonic() - start < 90


def test_tasks_are_routed_by_app():
    from pyros.celery import route_task

    assert route_task("pyros.alert_manager.process_alert", (), {}, {}) == {"queue": "alerts"}
    assert route_task("pyros.majordome.execute_sequence", (), {}, {}) == {"queue": "execution"}
    assert route_task("pyros.majordome.run_calibrations", (), {}, {}) == {"queue": "execution"}
    assert route_task("pyros.majordome.close_and_park", (), {}, {}) == {"queue": "monitoring"}
    assert route_task("pyros.majordome.tick", (), {}, {}) == {"queue": "default"}
    assert route_task("pyros.scheduler.make_schedule", (), {}, {}) == {"queue": "scheduling"}
    assert route_task("pyros.analyzer.analyze_image", (), {}, {}) == {"queue": "analysis"}
    assert route_task("pyros.majordome.poll", (), {}, {}) == {"queue": "monitoring"}
    assert route_task("pyros.common.log_purge", (), {}, {}) == {"queue": "default"}


def test_only_json_is_accepted():
    from pyros.celery import app

    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"


@pytest.mark.slow
@pytest.mark.services
def test_tasks_keep_their_database_session(tmp_path, rabbitmq_url, postgres_required):
    """Celery's Django fixup would close the connection after every task (a new PostgreSQL session per task,
    ~4 ms); PyROS keeps it: eight tasks on a two-thread worker use at most two sessions."""
    data = _round_trip(tmp_path, rabbitmq_url, "rpc://", pool="threads", count=8)
    sessions = [result["db_session"] for result in data["results"]]
    assert None not in sessions and len(set(sessions)) <= 2, sessions
