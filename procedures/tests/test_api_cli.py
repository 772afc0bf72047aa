"""The REST API (success/msg in every answer, roles, OpenAPI) and the `pyros` CLI against a running server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from procedures import services
from procedures.models import QueueItem, QueueState
from pyrosapp.models import User
from pyrosapp.tests.factories import UserFactory


@pytest.fixture
def loaded(procedures_dir, db):
    services.procedures_reload(directory=procedures_dir)
    return procedures_dir


def _client(role: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(role=role))
    return client


def test_every_answer_carries_success_and_msg(loaded):
    op = _client(User.Role.OPERATOR)
    r = op.post("/api/queue/items/", {"procedure": "count_up", "params": {"n": 4}}, format="json")
    assert r.status_code == 200 and r.json()["success"] is True and r.json()["msg"] == "count_up queued"
    r = op.post("/api/queue/items/", {"procedure": "count_up", "params": {"n": "many"}}, format="json")
    assert r.status_code == 400 and r.json()["success"] is False and "n: 'many' is not of type" in r.json()["msg"]
    r = op.post("/api/queue/batch/", {"items": [{"procedure": "count_up"}, {"procedure": "zzz"}]}, format="json")
    assert r.status_code == 400 and "item 2: unknown procedure 'zzz'" in r.json()["msg"]
    assert QueueItem.objects.count() == 1
    uid = QueueItem.objects.get().uid
    assert op.post("/api/queue/move/", {"uid": str(uid), "pos": "front"}, format="json").json()["success"]
    assert op.post("/api/queue/start/").json()["success"] and QueueState.objects.get().running
    assert op.post("/api/queue/pause/", {"when": "immediate"}, format="json").json()["success"]
    r = op.post("/api/queue/abort/")
    assert r.status_code == 409 and r.json() == {"success": False, "msg": "no item is running"}
    body = op.get("/api/queue/").json()
    assert body["success"] and body["queue"]["state"] == "paused" and len(body["items"]) == 1
    assert op.get("/api/procedures/focus_sweep/").json()["procedure"]["schema"]["properties"]["points"]["minimum"] == 5
    assert op.get("/api/queue/history/").json() == {"success": True, "msg": "", "count": 0, "items": []}


def test_astronomers_see_the_queue_read_only(loaded):
    astro = _client(User.Role.ASTRONOMER)
    assert astro.get("/api/queue/").json()["success"]
    assert astro.get("/api/procedures/").status_code == 200
    assert astro.post("/api/queue/items/", {"procedure": "count_up"}, format="json").status_code == 403
    assert astro.post("/api/procedures/reload/").status_code == 403


def test_the_queue_api_is_in_the_openapi_schema(loaded):
    schema = _client(User.Role.OPERATOR).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in ("/api/procedures/", "/api/queue/", "/api/queue/items/", "/api/queue/batch/", "/api/queue/move/",
                 "/api/queue/remove/", "/api/queue/clear/", "/api/queue/start/", "/api/queue/stop/",
                 "/api/queue/pause/", "/api/queue/resume/", "/api/queue/abort/", "/api/queue/history/"):
        assert path in schema["paths"], path


def _pyros(live_server, token, *args) -> subprocess.CompletedProcess:
    env = {"PYROS_URL": live_server.url, "PYROS_TOKEN": token, "PATH": "/usr/bin:/bin",
           "PYROS_CLI_CONFIG": "/nonexistent"}
    return subprocess.run([sys.executable, "-m", "procedures.cli", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_cli_against_a_running_server(loaded, live_server, transactional_db):
    services.procedures_reload()
    token = Token.objects.create(user=UserFactory(role=User.Role.OPERATOR)).key
    r = _pyros(live_server, token, "procedures", "list")
    assert r.returncode == 0 and "focus_sweep" in r.stdout
    r = _pyros(live_server, token, "procedures", "show", "focus_sweep")
    assert r.returncode == 0 and "exposure_s: number [s] = 2.0" in r.stdout
    r = _pyros(live_server, token, "queue", "add", "count_up", "n=3", "mode=slow")
    assert r.returncode == 0 and "count_up queued" in r.stdout
    r = _pyros(live_server, token, "queue", "add", "count_up", "n=0")
    assert r.returncode == 1 and "minimum of 1" in r.stderr and QueueItem.objects.count() == 1
    r = _pyros(live_server, token, "queue", "add", "count_up", "junk")
    assert r.returncode == 2
    r = _pyros(live_server, token, "--json", "queue", "show")
    data = json.loads(r.stdout)
    assert r.returncode == 0 and data["success"] and data["items"][0]["params"] == {"n": 3, "pause_s": 0.05,
                                                                                    "mode": "slow"}
    assert _pyros(live_server, token, "queue", "start").returncode == 0
    assert _pyros(live_server, token, "queue", "pause", "--immediate").returncode == 0
    assert QueueState.objects.get().paused
    assert _pyros(live_server, token, "queue", "resume").returncode == 0
    r = _pyros(live_server, token, "queue", "abort")
    assert r.returncode == 1 and "no item is running" in r.stderr
    r = _pyros(live_server, token, "monitor", "--once")
    assert r.returncode == 0 and "count_up" in r.stdout
    r = _pyros(live_server, token, "queue", "clear")
    assert r.returncode == 0 and "1 item(s) removed" in r.stdout
    assert _pyros(live_server, "wrong-token", "queue", "show").returncode == 3
    r = _pyros(live_server, token, "requests", "list")
    assert r.returncode == 0


def test_cli_says_when_pyros_is_unreachable_or_its_url_is_wrong():
    from devices.testing import free_port

    class Server:  # nothing listens on this port
        url = f"http://127.0.0.1:{free_port()}"

    r = _pyros(Server, "token", "queue", "show")
    assert r.returncode == 3 and f"PyROS unreachable at {Server.url}" in r.stderr
    Server.url = "127.0.0.1:8000"  # no scheme
    r = _pyros(Server, "token", "queue", "show")
    assert r.returncode == 2 and "expected http://host:port" in r.stderr


def test_cli_keeps_one_connection_and_reopens_one_the_server_closed(loaded, live_server, transactional_db):
    from procedures.cli import Api

    token = Token.objects.create(user=UserFactory(role=User.Role.OPERATOR)).key
    api = Api(live_server.url, token)
    assert api.call("GET", "queue/")["success"]
    first = api._conn
    assert api.call("GET", "procedures/")["success"] and api._conn is first  # kept alive
    assert first.sock is not None  # kept alive by the server
    first.sock.shutdown(socket.SHUT_RDWR)  # as a server closing an idle kept-alive connection
    assert api.call("GET", "queue/")["success"]
    api.close()


def test_cli_finds_items_by_short_uid_anywhere_and_says_what_it_did(loaded, live_server, transactional_db):
    """What an operator trips over at the console: the running item's uid not found, 'matches 0 item(s): give
    more of its uid' for a uid that exists nowhere, no uid printed for what was just queued, Detect changes
    without the module names, a block without its end, `pyros queue env` without its pid."""
    token = Token.objects.create(user=UserFactory(role=User.Role.OPERATOR)).key
    r = _pyros(live_server, token, "queue", "add", "count_up", "n=2")
    queued = QueueItem.objects.get()
    assert r.returncode == 0 and f"count_up queued: item {str(queued.uid)[:8]}" in r.stdout
    running = QueueItem.objects.create(procedure="count_up", params={"n": 5}, timeout_s=60, sky="none",
                                       status="running")
    r = _pyros(live_server, token, "queue", "flow", str(running.uid)[:8])
    assert r.returncode == 0 and r.stdout.startswith(f"count_up {str(running.uid)[:8]} running")
    r = _pyros(live_server, token, "queue", "flow", "0000zz")
    assert r.returncode == 1 and "no queue item '0000zz'" in r.stderr and "give more" not in r.stderr
    r = _pyros(live_server, token, "queue")  # no action: the queue as `queue show` prints it
    assert r.returncode == 0 and "queued (1):" in r.stdout and "running: count_up" in r.stdout
    r = _pyros(live_server, token, "queue", "env")
    assert r.returncode == 0 and r.stdout.strip() == "environment: closed   [manager not running]"
    QueueItem.objects.create(procedure="count_up", params={}, timeout_s=60, sky="none", status="failed",
                             ended_at=running.added_at, message="x" * 100)
    r = _pyros(live_server, token, "queue", "history")
    assert r.returncode == 0 and "x" * 79 + "…" in r.stdout and " UTC " in r.stdout
    (loaded / "extra.py").write_text("from procedures.sdk import procedure\n")
    r = _pyros(live_server, token, "procedures", "changes")
    assert r.returncode == 0 and "  added: extra" in r.stdout and "pyros procedures reload" in r.stdout
    r = _pyros(live_server, token, "queue", "block", "30")
    until = QueueState.objects.get().block_until
    assert r.returncode == 0 and f"procedure block open until {until:%Y-%m-%d %H:%M:%S} UTC" in r.stdout
    r = _pyros(live_server, token, "queue")
    assert f"procedure block until {until:%Y-%m-%d %H:%M:%S} UTC" in r.stdout


def test_pause_and_stop_say_what_they_do_to_the_running_item(loaded):
    """'queue pauses after the running item' was the answer with no item running (the queue paused at once)."""
    op = _client(User.Role.OPERATOR)
    assert op.post("/api/queue/start/", {}, format="json").json()["success"]
    r = op.post("/api/queue/pause/", {"when": "deferred"}, format="json").json()
    assert r["msg"] == "queue paused (no item was running)" and QueueState.objects.get().paused
    op.post("/api/queue/resume/", {}, format="json")
    QueueItem.objects.create(procedure="count_up", params={}, timeout_s=60, sky="none", status="running")
    r = op.post("/api/queue/pause/", {"when": "deferred"}, format="json").json()
    assert r["msg"] == "queue pauses after count_up, the running item" and not QueueState.objects.get().paused
    op.post("/api/queue/resume/", {}, format="json")
    r = op.post("/api/queue/pause/", {"when": "immediate"}, format="json").json()
    assert r["msg"] == "queue paused: count_up is stopped now and queued again at the front"
    op.post("/api/queue/resume/", {}, format="json")
    assert op.post("/api/queue/stop/", {}, format="json").json()["msg"] == (
        "queue stopped: count_up finishes, no other item starts")
    QueueItem.objects.update(status="completed")
    op.post("/api/queue/start/", {}, format="json")
    assert op.post("/api/queue/stop/", {}, format="json").json()["msg"] == "queue stopped"


def test_cli_output_piped_into_head_ends_without_a_traceback(loaded, live_server, transactional_db):
    """`pyros ... | head` printed a BrokenPipeError traceback when the output outgrew the pipe."""
    token = Token.objects.create(user=UserFactory(role=User.Role.OPERATOR)).key
    QueueItem.objects.bulk_create([  # ~1 MB of JSON: far more than a pipe holds once head has gone
        QueueItem(procedure="count_up", params={}, timeout_s=60, sky="none", status="completed", message="x" * 2000)
        for _ in range(500)])
    env = {"PYROS_URL": live_server.url, "PYROS_TOKEN": token, "PATH": "/usr/bin:/bin",
           "PYROS_CLI_CONFIG": "/nonexistent"}
    r = subprocess.run(f"{sys.executable} -m procedures.cli --json queue history --limit 500 | head -1", shell=True,
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout == "{\n"
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
