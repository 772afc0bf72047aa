"""Script procedures (procedures/external.py, script_client.py, the loader's scripts/ folder): real
subprocesses, their output in the item's log, published data read back, abort and timeout, and one run
through the real queue manager and worker."""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

import pytest

from common.testing import scaled_s, wait_until
from procedures.context import ProcedureContext, RunControl, _ItemLogHandler
from procedures.external import ScriptRun, base_environment, script_command
from procedures.loader import describe_directory
from procedures.sdk import ProcedureAborted, ProcedureError

PUBLISHER = '''
import sys, time
from procedures.script_client import params, progress, publish
p = params()
print("starting with", p["n"])
print("a warning on stderr", file=sys.stderr)
for i in range(1, p["n"] + 1):
    publish(count=i, squares=[k * k for k in range(1, i + 1)])
    progress(i, p["n"], f"step {i}")
    time.sleep(0.15)
print("done")
'''

STUBBORN = '''
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "300"])
print("child", child.pid, flush=True)
while True:
    time.sleep(0.05)
'''

POLITE = '''
import time
print("waiting", flush=True)
try:
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:
    print("interrupted, cleaning up", flush=True)
    raise SystemExit(4)
'''

FAILS = '''
import sys
from procedures.script_client import publish
publish(partial=True)
print("cannot find the disk", file=sys.stderr)
sys.exit(3)
'''

SHELL = '''#!/bin/sh
# --- pyros procedure ---
# title = "Shell check"
# timeout_s = 30
# sky = "none"
# [params.label]
# type = "string"
# default = "x"
# [params.count]
# type = "integer"
# minimum = 1
# --- end ---
echo "args: $*"
echo '{"from_shell": true}' > /dev/fd/$PYROS_PUBLISH_FD
'''


def _gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie waiting for a reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.fixture
def scripts(tmp_path, settings):
    """A procedures folder with a scripts/ subfolder; settings point at it."""
    folder = tmp_path / "procedures"
    (folder / "scripts").mkdir(parents=True)
    settings.PYROS_PROCEDURES_DIR = folder
    settings.PYROS_DATA_DIR = tmp_path / "data"
    settings.VAR_DIR = tmp_path / "var"

    def write(name: str, text: str, *, mode: int = 0o644) -> Path:
        path = folder / "scripts" / name
        path.write_text(text)
        path.chmod(mode)
        return path

    return write


@pytest.fixture
def ctx():
    """A procedure context as the worker builds it: a RunControl, a logger with the item's log handler."""
    control = RunControl(item_id=0)
    logger = logging.getLogger(f"pyros.procedures.test-{uuid.uuid4().hex[:8]}")
    logger.addHandler(_ItemLogHandler(control))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return ProcedureContext(control=control, observatory=None, item_uid=str(uuid.uuid4()), procedure="test",
                            logger=logger)


def _log_text(ctx) -> list[str]:
    return [line[2] for line in ctx.control.snapshot()["log"]]


@pytest.mark.django_db
def test_a_script_publishes_data_that_the_caller_reads_while_it_runs_and_at_the_end(scripts, ctx):
    scripts("publisher.py", PUBLISHER)
    handle = ctx.script("publisher.py", {"n": 6}, wait=False)
    seen = wait_until(lambda: (s := handle.status())["published"].get("count", 0) >= 2 and s,
                      timeout_s=scaled_s(10), what="data published while running")
    assert seen["running"] and seen["pid"] == handle.run.pid
    assert ctx.control.snapshot()["published"]["count"] >= 2  # already the item's data, live
    result = handle.wait(scaled_s(20))
    assert result.outcome == "succeeded" and result.exit_status == 0
    assert result.published == {"count": 6, "squares": [1, 4, 9, 16, 25, 36]}
    snap = ctx.control.snapshot()
    assert snap["published"]["count"] == 6 and snap["published"]["squares"][-1] == 36
    assert snap["published"]["scripts"]["publisher.py"]["exit_status"] == 0
    assert (snap["current"], snap["total"], snap["message"]) == (6.0, 6.0, "step 6")
    lines = _log_text(ctx)
    assert "publisher.py> starting with 6" in lines and "publisher.py> done" in lines
    assert "publisher.py> a warning on stderr" in lines
    levels = {line[2]: line[1] for line in snap["log"]}
    assert levels["publisher.py> a warning on stderr"] == "WARNING" and levels["publisher.py> done"] == "INFO"


@pytest.mark.django_db
def test_publish_as_keeps_a_scripts_data_under_its_own_key(scripts, ctx):
    scripts("publisher.py", PUBLISHER)
    result = ctx.script("publisher.py", {"n": 2}, publish_as="first")
    assert result.published["count"] == 2
    published = ctx.control.snapshot()["published"]
    assert published["first"] == {"count": 2, "squares": [1, 4]} and "count" not in published


@pytest.mark.django_db
@pytest.mark.parametrize("source, expected", [(STUBBORN, "SIGKILL"), (POLITE, "SIGINT")])
def test_an_abort_stops_the_script_and_its_children_within_2_s(scripts, ctx, source, expected):
    scripts("long.py", source)
    handle = ctx.script("long.py", wait=False)
    wait_until(lambda: any(">" in line for line in _log_text(ctx)), timeout_s=scaled_s(10), what="script output")
    child = next((int(line.split()[-1]) for line in _log_text(ctx) if "long.py> child" in line), None)
    t0 = time.monotonic()
    ctx.control.request_stop(reason="aborted by the operator", kind="abort")
    with pytest.raises(ProcedureAborted):
        handle.wait(scaled_s(10))
    elapsed = time.monotonic() - t0
    assert elapsed < scaled_s(2.0), elapsed
    assert _gone(handle.run.pid)
    if child is not None:  # what the script started, in its process group
        wait_until(lambda: _gone(child), timeout_s=scaled_s(1), what="the script's child gone")
    record = ctx.control.snapshot()["published"]["scripts"]["long.py"]
    assert record["outcome"] == "aborted" and record["stopped_with"] == expected
    if expected == "SIGINT":
        assert record["exit_status"] == 4 and "long.py> interrupted, cleaning up" in _log_text(ctx)
    else:
        assert record["signal"] == "SIGKILL"


@pytest.mark.django_db
def test_a_timeout_kills_the_script_and_fails_the_call(scripts, ctx):
    scripts("stubborn.py", STUBBORN)
    t0 = time.monotonic()
    with pytest.raises(ProcedureError, match="passed its timeout and was killed"):
        ctx.script("stubborn.py", timeout_s=0.5, grace_s=0.3)
    assert time.monotonic() - t0 < scaled_s(3)
    assert ctx.control.snapshot()["published"]["scripts"]["stubborn.py"]["outcome"] == "timeout"


@pytest.mark.django_db
def test_a_failing_script_fails_the_call_with_its_status_and_last_error_line(scripts, ctx):
    scripts("fails.py", FAILS)
    with pytest.raises(ProcedureError, match=r"exited with status 3; last line on stderr: cannot find the disk"):
        ctx.script("fails.py")
    published = ctx.control.snapshot()["published"]
    assert published["partial"] is True and published["scripts"]["fails.py"]["exit_status"] == 3
    result = ctx.script("fails.py", check=False)
    assert result.outcome == "failed" and result.exit_status == 3


@pytest.mark.django_db
def test_bad_calls_are_refused_before_anything_runs(scripts, ctx):
    with pytest.raises(ProcedureError, match="not found"):
        ctx.script("missing.py")
    scripts("plain.sh", "echo hi\n")
    with pytest.raises(ProcedureError, match="not executable"):
        ctx.script("plain.sh")
    ctx.control.request_stop(reason="aborted", kind="abort")
    scripts("publisher.py", PUBLISHER)
    with pytest.raises(ProcedureAborted):  # an aborted procedure starts nothing
        ctx.script("publisher.py", {"n": 1})


API_USER = '''
from procedures.script_client import ApiError, api, publish
try:
    answer = api("GET", "queue/")
    publish(status=200, state=answer["queue"]["state"])
except ApiError as exc:
    publish(status=exc.status)
'''


@pytest.mark.django_db(transaction=True)
def test_a_script_uses_the_rest_api_with_the_token_of_the_operator_who_queued_the_item(scripts, live_server,
                                                                                        settings):
    from rest_framework.authtoken.models import Token

    from procedures.models import QueueItem
    from pyrosapp.models import User
    from pyrosapp.tests.factories import UserFactory

    settings.PYROS_SITE_URL = live_server.url
    scripts("api_user.py", API_USER)
    operator = UserFactory(role=User.Role.OPERATOR)
    astronomer = UserFactory(role=User.Role.ASTRONOMER)
    outcomes = {}
    for who in (operator.email, astronomer.email, "cli-without-account"):
        item = QueueItem.objects.create(procedure="api_user", timeout_s=60, sky="none", added_by=who)
        control = RunControl(item_id=item.pk)
        context = ProcedureContext(control=control, observatory=None, item_uid=str(item.uid), procedure="api_user",
                                   logger=logging.getLogger("pyros.procedures.api-user-test"))
        outcomes[who] = context.script("api_user.py").published
    assert outcomes[operator.email] == {"status": 200, "state": "stopped"}
    assert Token.objects.filter(user=operator).exists() and not Token.objects.filter(user=astronomer).exists()
    assert outcomes[astronomer.email] == {"status": 401} and outcomes["cli-without-account"] == {"status": 401}


@pytest.mark.django_db(transaction=True)
def test_a_script_procedure_as_a_flow_step_publishes_into_the_steps_data(scripts, tmp_path):
    from procedures import services
    from procedures.flows import run_flow
    from procedures.models import QueueItem, StepRun
    from procedures.sdk import Flow, Step
    from procedures.worker import _Modules

    shell = scripts("shell_check.sh", SHELL, mode=0o755)
    services.procedures_reload(directory=shell.parent.parent)
    seen = {}

    def after(ctx):
        seen.update(ctx.data["check"])

    flow = Flow(Step("check", "shell_check", params={"count": "2"}), Step("after", after, require="check"))
    item = QueueItem.objects.create(procedure="flow", timeout_s=60, sky="none", status="running")
    control = RunControl(item_id=item.pk)
    logger = logging.getLogger(f"pyros.procedures.flow-{uuid.uuid4().hex[:8]}")
    logger.addHandler(_ItemLogHandler(control))
    logger.setLevel(logging.INFO)
    context = ProcedureContext(control=control, observatory=None, item_uid=str(item.uid), procedure="flow",
                               logger=logger)
    run_flow(flow, ctx=context, item=item, resolve_procedure=_Modules().resolver())
    check = StepRun.objects.get(run__item=item, path="check")
    assert check.state == "succeeded" and check.data["from_shell"] is True
    assert check.data["scripts"]["shell_check.sh"]["exit_status"] == 0 and check.data["result"]["exit_status"] == 0
    assert seen["from_shell"] is True  # a later step reads it
    assert "[check] shell_check.sh> args: --count=2 --label=x" in _log_text(context)


@pytest.mark.django_db(transaction=True)
def test_ctx_script_in_a_function_step_publishes_into_that_steps_data(scripts, tmp_path):
    from procedures.flows import run_flow
    from procedures.models import QueueItem, StepRun
    from procedures.sdk import Flow, Step

    shell = scripts("shell_check.sh", SHELL, mode=0o755)

    def check(ctx):
        ctx.script(shell, {"count": 2})

    flow = Flow(Step("check", check), Step("after", lambda ctx: None, require="check"))
    item = QueueItem.objects.create(procedure="flow", timeout_s=60, sky="none", status="running")
    control = RunControl(item_id=item.pk)
    logger = logging.getLogger(f"pyros.procedures.flow-{uuid.uuid4().hex[:8]}")
    logger.addHandler(_ItemLogHandler(control))
    logger.setLevel(logging.INFO)
    context = ProcedureContext(control=control, observatory=None, item_uid=str(item.uid), procedure="flow",
                               logger=logger)
    run_flow(flow, ctx=context, item=item, resolve_procedure=lambda name: None)
    step = StepRun.objects.get(run__item=item, path="check")
    assert step.state == "succeeded" and step.data["from_shell"] is True
    assert step.data["scripts"]["shell_check.sh"]["exit_status"] == 0
    item.refresh_from_db()
    assert "from_shell" not in (item.published or {})  # the step's, not the item's
    assert "[check] shell_check.sh> args: --count=2" in _log_text(context)


def test_the_script_environment_is_clean_and_arguments_follow_the_parameters(tmp_path):
    script = tmp_path / "env.py"
    script.write_text("import json, os, sys\nprint(json.dumps({'argv': sys.argv[1:], 'env': sorted(os.environ)}))\n")
    lines = []
    os.environ["PYROS_TEST_SECRET"] = "x"
    try:
        run = ScriptRun(script_command(script, {"a": "two words", "n": 3, "flag": False, "xs": [1.5, 2]}, ["extra"]),
                        name="env.py", cwd=tmp_path, env=base_environment(),
                        on_line=lambda stream, text: lines.append(text)).start()
        assert run.wait(scaled_s(10)).exit_status == 0
    finally:
        del os.environ["PYROS_TEST_SECRET"]
    import json

    seen = json.loads(lines[0])
    assert seen["argv"] == ["--a=two words", "--n=3", "--flag=false", "--xs=[1.5, 2]", "extra"]
    assert "PYROS_TEST_SECRET" not in seen["env"] and "DATABASE_URL" not in seen["env"]
    assert "PYROS_PUBLISH_FD" in seen["env"]


def test_the_loader_lists_script_procedures_with_their_schema_and_reports_bad_headers(tmp_path):
    folder = tmp_path / "procs"
    (folder / "scripts").mkdir(parents=True)
    shell = folder / "scripts" / "shell_check.sh"
    shell.write_text(SHELL)
    shell.chmod(0o755)
    (folder / "scripts" / "no_header.py").write_text("print('hi')\n")
    no_shebang = folder / "scripts" / "no_shebang.sh"
    no_shebang.write_text(SHELL.split("\n", 1)[1])
    no_shebang.chmod(0o755)
    (folder / "scripts" / "bad_default.py").write_text(
        '# --- pyros procedure ---\n# [params.n]\n# type = "integer"\n# minimum = 1\n# default = 0\n# --- end ---\n')
    (folder / "scripts" / "typo.py").write_text(
        '# --- pyros procedure ---\n# timeout = 5\n# --- end ---\n')
    specs = {s.name: s for s in describe_directory(folder)}
    good = specs["scripts/shell_check.sh"]
    assert good.error == "" and [p.name for p in good.procedures] == ["shell_check"]
    proc = good.procedures[0]
    assert proc.title == "Shell check" and proc.sky == "none" and "script" in proc.tags
    assert proc.schema["properties"]["count"] == {"type": "integer", "title": "count", "minimum": 1}
    assert proc.schema["required"] == ["count"] and proc.schema["additionalProperties"] is False
    assert proc.timeout_s > 30  # the item's timeout leaves the script's own timeout room to act first
    assert "no header" in specs["scripts/no_header.py"].error
    assert "needs a #! first line" in specs["scripts/no_shebang.sh"].error
    assert "default 0 is invalid" in specs["scripts/bad_default.py"].error
    assert "unknown header key(s) timeout" in specs["scripts/typo.py"].error


def test_the_shipped_disk_check_is_a_script_procedure():
    library = Path(__file__).resolve().parent.parent / "library"
    spec = next(s for s in describe_directory(library) if s.name == "scripts/disk_check.py")
    assert spec.error == "" and spec.procedures[0].name == "disk_check"
    assert set(spec.procedures[0].schema["properties"]) == {"min_free_gb", "hours", "paths", "query_api"}


# --- Through the real queue manager and worker --------------------------------------------------------------
@pytest.fixture
def queue_without_devices(transactional_db, procedures_dir, tmp_path, settings):
    """The demo observatory (no simulators: these procedures use no device) in manual mode, the procedures
    loaded, the manager running with its worker open."""
    from common.testing import test_database_url
    from procedures import services
    from procedures.models import QueueState
    from procedures.testing import queue_manager
    from pyros.demo import seed_demo
    from pyrosapp.models import ObservatoryState

    seed = seed_demo()
    ObservatoryState.objects.filter(site=seed.site).update(phase="night", safety="safe", mode="manual")
    settings.PYROS_DATA_DIR = tmp_path / "data"
    (tmp_path / "data").mkdir()
    services.procedures_reload(directory=procedures_dir)
    env = {"PYROS_PROCEDURES_DIR": str(procedures_dir), "PYROS_DATA_DIR": str(tmp_path / "data"),
           "PYROS_VAR_DIR": str(tmp_path / "var"), "PYROS_INDI_HOST": "127.0.0.1", "PYROS_INDI_PORT": "9",
           "PYROS_QUEUE_ABORT_GRACE_S": "5"}
    with queue_manager(database_url=test_database_url(), env=env, log_path=tmp_path / "manager.log") as proc:
        services.queue_start(by="test")
        wait_until(lambda: QueueState.objects.get().env_status == "idle", timeout_s=scaled_s(60),
                   what="worker environment open")
        yield {"proc": proc, "dir": procedures_dir, "tmp": tmp_path}


@pytest.mark.slow
def test_a_script_procedure_runs_through_the_queue_with_its_output_and_data_in_the_history(queue_without_devices):
    from procedures import services
    from procedures.models import QueueItem

    item = services.queue_item_add(procedure="disk_check", params={"min_free_gb": "0.001", "query_api": "false"},
                                   by="test")
    done = wait_until(lambda: (i := QueueItem.objects.get(uid=item.uid)).status in QueueItem.ENDED and i,
                      timeout_s=scaled_s(60), what="disk_check ended")
    assert done.status == "completed", (done.message, done.traceback)
    assert done.published["disks"][0]["path"].endswith("data") and done.published["night_files"] == 0
    assert done.published["result"]["exit_status"] == 0
    assert done.published["scripts"]["disk_check.py"]["outcome"] == "succeeded"
    lines = [line[2] for line in done.log]
    assert any(line.startswith("disk_check.py> ") and "GB free" in line for line in lines), lines
    assert any("0 FITS file(s) written" in line for line in lines)

    low = services.queue_item_add(procedure="disk_check", params={"min_free_gb": 1e9, "query_api": False}, by="test")
    failed = wait_until(lambda: (i := QueueItem.objects.get(uid=low.uid)).status in QueueItem.ENDED and i,
                        timeout_s=scaled_s(60), what="second disk_check ended")
    assert failed.status == "failed" and "exited with status 1" in failed.message
    assert "less than 1e+09 GB" in failed.message
    assert failed.published["scripts"]["disk_check.py"]["exit_status"] == 1
    assert [line[2] for line in failed.log if "exited with status 1" in line[2]][0].count("status 1") == 1

    # A folder that does not exist is not called 'low disk space'.
    gone = str(queue_without_devices["tmp"] / "no-such-folder")
    missing = services.queue_item_add(procedure="disk_check", params={"paths": [gone], "query_api": False}, by="test")
    failed = wait_until(lambda: (i := QueueItem.objects.get(uid=missing.uid)).status in QueueItem.ENDED and i,
                        timeout_s=scaled_s(60), what="third disk_check ended")
    assert failed.message == ("script disk_check.py exited with status 1; last line on stderr: "
                              f"disk check failed: {gone} does not exist")


@pytest.mark.slow
def test_an_operator_abort_stops_a_script_procedure_within_2_s(queue_without_devices):
    from procedures import services
    from procedures.models import QueueItem

    stubborn = queue_without_devices["dir"] / "scripts" / "stubborn.py"
    stubborn.write_text("# --- pyros procedure ---\n# timeout_s = 120\n# sky = \"none\"\n# --- end ---\n" + STUBBORN)
    services.procedures_reload(directory=queue_without_devices["dir"])
    item = services.queue_item_add(procedure="stubborn", by="test")
    running = wait_until(lambda: (i := QueueItem.objects.get(uid=item.uid)).status == "running"
                         and any("stubborn.py> child" in line[2] for line in i.log) and i,
                         timeout_s=scaled_s(30), what="the script running")
    child = int(next(line[2] for line in running.log if "stubborn.py> child" in line[2]).split()[-1])
    t0 = time.monotonic()
    services.queue_abort(by="test")
    done = wait_until(lambda: (i := QueueItem.objects.get(uid=item.uid)).status in QueueItem.ENDED and i,
                      timeout_s=scaled_s(10), what="aborted")
    assert time.monotonic() - t0 < scaled_s(2.5)  # 0.1 s watcher poll + SIGINT + 1 s grace + SIGKILL
    assert done.status == "aborted", done.message
    assert done.published["scripts"]["stubborn.py"]["stopped_with"] == "SIGKILL"
    wait_until(lambda: _gone(child), timeout_s=scaled_s(1), what="the script's child gone")
