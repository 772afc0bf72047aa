"""The flow engine in this process (no worker, no devices): order, loops, data between steps, concurrency and
the telescope's serialisation, failure (stop-on-failure), recovery, declaration errors; and the recover command."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from common.testing import scaled_s
from procedures import selectors, services
from procedures.context import ProcedureContext, RunControl
from procedures.flows import FlowFailed, run_flow
from procedures.models import FlowRun, QueueItem, StepRun
from procedures.sdk import Flow, FlowError, Group, Loop, ProcedureAborted, ProcedureError, Step
from procedures.services import QueueError

pytestmark = pytest.mark.django_db(transaction=True)


class Journal:
    """What the steps did, in order, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, float]] = []

    def add(self, what: str, path: str) -> None:
        with self.lock:
            self.events.append((what, path, time.monotonic()))

    def started(self) -> list[str]:
        return [p for w, p, _ in self.events if w == "start"]

    def span(self, path: str) -> tuple[float, float]:
        start = next(t for w, p, t in self.events if w == "start" and p == path)
        end = next(t for w, p, t in self.events if w == "end" and p == path)
        return start, end


def step(journal: Journal, *, sleep_s: float = 0.0, fail: bool = False, publish=None):
    def fn(ctx):
        journal.add("start", ctx.path)
        ctx.sleep(sleep_s)
        if fail:
            journal.add("end", ctx.path)
            raise RuntimeError(f"{ctx.path} broke")
        if publish:
            ctx.publish(**publish(ctx))
        journal.add("end", ctx.path)
    return fn


def run(flow: Flow, *, recovers: QueueItem | None = None, control: RunControl | None = None,
        observatory=None) -> QueueItem:
    """A running item, the flow run on it as the worker runs it, and its end recorded like the worker does."""
    item = QueueItem.objects.create(procedure="count_up", params={}, timeout_s=60, sky="none", status="running",
                                    recovers=recovers)
    control = control or RunControl(item_id=item.pk)
    control.item_id = item.pk
    ctx = ProcedureContext(control=control, observatory=observatory or object(), item_uid=str(item.uid),
                           procedure="test_flow", logger=logging.getLogger("pyros.procedures.test_flow"))
    status, message, tb = "completed", "completed", ""
    try:
        run_flow(flow, ctx=ctx, item=item)
    except FlowFailed as exc:
        status, message, tb = "failed", str(exc), exc.traceback
    except ProcedureAborted as exc:
        status, message = ("aborted" if exc.kind == "abort" else "stopped"), exc.reason
    finally:
        ctx.wait_saves()
    services.queue_item_finish(item_id=item.pk, status=status, message=message, traceback=tb,
                               snapshot=control.snapshot())
    return QueueItem.objects.get(pk=item.pk)


def states(item: QueueItem) -> dict[str, str]:
    return dict(StepRun.objects.filter(run__item=item).values_list("path", "state"))


def test_three_steps_with_a_loop_and_a_dependency_run_in_order():
    journal = Journal()

    def measure(ctx):
        journal.add("start", ctx.path)
        ctx.publish(squared=ctx.value ** 2, offset=ctx.data["prepare"]["offset"])
        journal.add("end", ctx.path)

    def report(ctx):
        journal.add("start", ctx.path)
        points = ctx.data["points"]
        journal.add("end", ctx.path)
        return {"total": sum(p["measure"]["squared"] + p["measure"]["offset"] for p in points)}

    flow = Flow(
        Step("report", report, require=(("points", "success"),)),
        Step("prepare", step(journal, publish=lambda ctx: {"offset": 100})),
        Loop("points", [1, 2, 3], Step("measure", measure), require="prepare"),
    )
    item = run(flow)
    assert item.status == "completed", item.message
    assert journal.started() == ["prepare", "points/1/measure", "points/2/measure", "points/3/measure", "report"]
    rows = {r.path: r for r in StepRun.objects.filter(run__item=item)}
    assert {p: r.state for p, r in rows.items()} == {
        "report": "succeeded", "prepare": "succeeded", "points": "succeeded", "points/1": "succeeded",
        "points/1/measure": "succeeded", "points/2": "succeeded", "points/2/measure": "succeeded",
        "points/3": "succeeded", "points/3/measure": "succeeded"}
    assert rows["report"].data == {"result": {"total": 1 + 4 + 9 + 300}}
    assert rows["points/2"].value == 2 and rows["points/2/measure"].data == {"squared": 4, "offset": 100}
    assert rows["report"].requires == [["points", "success"]]
    # Stored with timestamps, each after what it required.
    assert rows["prepare"].ended_at <= rows["points/1/measure"].started_at
    assert rows["points/3/measure"].ended_at <= rows["report"].started_at
    assert rows["points"].started_at == rows["points/1/measure"].started_at
    assert item.published["flow"] == {"steps": 5, "succeeded": 5, "reused": 0, "failed": 0, "aborted": 0,
                                      "skipped": 0, "not_run": 0}


def test_independent_steps_run_concurrently_but_telescope_steps_never_do():
    journal = Journal()
    hold = scaled_s(0.4)
    flow = Flow(
        Step("disk_check", step(journal, sleep_s=hold)),
        Step("report_draft", step(journal, sleep_s=hold)),
        Step("darks", step(journal, sleep_s=hold), telescope=True),
        Step("park", step(journal, sleep_s=hold), telescope=True),
        max_concurrent=4,
    )
    item = run(flow)
    assert item.status == "completed", item.message
    a, b = journal.span("disk_check"), journal.span("report_draft")
    assert a[0] < b[1] and b[0] < a[1], "independent steps overlap"
    d, p = journal.span("darks"), journal.span("park")
    assert d[1] <= p[0] or p[1] <= d[0], "telescope steps never overlap"
    assert journal.span("darks")[0] < a[1], "a telescope step runs beside the others"
    rows = {r.path: r for r in StepRun.objects.filter(run__item=item)}
    assert rows["disk_check"].started_at < rows["report_draft"].ended_at
    assert rows["darks"].ended_at <= rows["park"].started_at or rows["park"].ended_at <= rows["darks"].started_at


def test_max_concurrent_bounds_the_parallel_steps():
    journal = Journal()
    flow = Flow(*[Step(f"s{i}", step(journal, sleep_s=scaled_s(0.2))) for i in range(4)], max_concurrent=2)
    assert run(flow).status == "completed"
    spans = sorted(journal.span(f"s{i}") for i in range(4))
    at_once = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert at_once == 2


def test_a_failing_step_stops_its_dependants_and_lets_running_siblings_finish():
    journal = Journal()
    flow = Flow(
        Step("breaks", step(journal, sleep_s=0.05, fail=True)),
        Step("long_sibling", step(journal, sleep_s=scaled_s(0.5))),
        Step("needs_breaks", step(journal), require="breaks"),
        Step("needs_sibling", step(journal), require="long_sibling"),
        Step("cleanup", step(journal), require=(("breaks", "failure"),)),
        Step("after_success_only", step(journal), require=(("breaks", "failure"), ("needs_breaks", "success"))),
        max_concurrent=4,
    )
    item = run(flow)
    assert item.status == "failed"
    assert item.message.startswith("step breaks failed: RuntimeError: breaks broke")
    assert "raise RuntimeError" in item.traceback
    got = states(item)
    assert got == {"breaks": "failed", "long_sibling": "succeeded", "needs_breaks": "skipped",
                   "needs_sibling": "pending", "cleanup": "succeeded", "after_success_only": "skipped"}
    assert journal.span("long_sibling")[1] > journal.span("breaks")[1]  # it finished after the failure
    assert "needs_sibling" not in journal.started()  # no new step after a failure (but the clean-up)
    assert StepRun.objects.get(run__item=item, path="needs_breaks").message == "needs breaks to succeed (it failed)"
    assert item.published["flow"]["not_run"] == 1


def test_without_stop_on_failure_the_independent_steps_go_on():
    journal = Journal()
    flow = Flow(Step("breaks", step(journal, fail=True)),
                Step("later", step(journal, sleep_s=0.1), require=(("breaks", "complete"),)),
                Loop("more", [1, 2], Step("x", step(journal)), require=(("later", "success"),)),
                stop_on_failure=False, max_concurrent=1)
    item = run(flow)
    assert item.status == "failed" and states(item)["more/2/x"] == "succeeded"


@pytest.fixture
def loaded(procedures_dir):
    """The procedures folder loaded (a recovery queues the item's procedure again, validated)."""
    services.procedures_reload(directory=procedures_dir)


def test_recovery_redoes_only_what_did_not_succeed_and_the_data_carries_over(loaded):
    calls = Journal()
    broken = {"at": 4}

    def measure(ctx):
        calls.add("start", ctx.path)
        if ctx.value == broken["at"]:
            raise RuntimeError("the camera went away")
        ctx.publish(v=ctx.value * 10)

    def fit(ctx):
        calls.add("start", ctx.path)
        return sum(i["measure"]["v"] for i in ctx.data["grid"])

    def flow():
        return Flow(Step("setup", step(calls, publish=lambda ctx: {"home": 1}), telescope=True),
                    Loop("grid", list(range(1, 11)), Step("measure", measure), Step("check", step(calls)),
                         require="setup"),
                    Step("fit", fit, require="grid"))

    first = run(flow())
    assert first.status == "failed" and "grid/4/measure failed" in first.message
    assert calls.started() == ["setup"] + [f"grid/{i}/{s}" for i in (1, 2, 3) for s in ("measure", "check")] \
        + ["grid/4/measure"]
    got = states(first)
    assert got["grid/3"] == "succeeded" and got["grid/4"] == "failed" and got["grid/5/measure"] == "pending"
    assert got["grid"] == "failed"

    calls.events.clear()
    broken["at"] = None
    item = services.queue_item_recover(uid=first.uid, by="test")
    assert item.recovers_id == first.pk and item.status == "queued"
    QueueItem.objects.filter(pk=item.pk).delete()  # run here instead of by the manager
    second = run(flow(), recovers=first)
    assert second.status == "completed", second.message
    assert calls.started() == [f"grid/{i}/{s}" for i in range(4, 11) for s in ("measure", "check")] + ["fit"]
    rows = {r.path: r for r in StepRun.objects.filter(run__item=second)}
    assert rows["setup"].reused and rows["setup"].state == "succeeded" and rows["setup"].data == {"home": 1}
    assert rows["grid/3/measure"].reused and not rows["grid/4/measure"].reused
    assert rows["fit"].data["result"] == sum(10 * i for i in range(1, 11))  # earlier points' data included
    assert FlowRun.objects.get(item=second).recovered_from == FlowRun.objects.get(item=first)
    # The loop's time in the recovery run is its own: from its first step run again, not from the earlier run.
    this_run = FlowRun.objects.get(item=second).started_at
    assert rows["grid"].started_at >= this_run and rows["grid/4"].started_at >= this_run
    assert second.published["flow"]["reused"] == 1 + 3 * 2 and second.published["flow"]["succeeded"] == 15


def test_a_step_that_is_run_again_runs_its_dependants_again():
    calls = Journal()
    flaky = {"fail": True}

    def a(ctx):
        calls.add("start", ctx.path)

    def b(ctx):
        calls.add("start", ctx.path)
        if flaky["fail"]:
            raise RuntimeError("no")

    flow = lambda: Flow(Step("a", a), Step("b", b), Step("c", a, require="a"), Step("d", a, require=("b", "c")),  # noqa: E731
                        max_concurrent=1, stop_on_failure=False)
    first = run(flow())
    assert states(first) == {"a": "succeeded", "b": "failed", "c": "succeeded", "d": "skipped"}
    calls.events.clear()
    flaky["fail"] = False
    second = run(flow(), recovers=first)
    assert second.status == "completed" and sorted(calls.started()) == ["b", "d"]


def test_loop_values_that_changed_are_measured_again():
    calls = Journal()
    first = run(Flow(Loop("grid", [10, 20, 30], Step("m", step(calls))), Step("boom", step(calls, fail=True),
                                                                               require="grid")))
    assert first.status == "failed"
    calls.events.clear()
    second = run(Flow(Loop("grid", [10, 25, 30], Step("m", step(calls))), Step("boom", step(calls),
                                                                               require="grid")), recovers=first)
    assert second.status == "completed" and calls.started() == ["grid/2/m", "boom"]


def test_an_abort_stops_the_flow_and_its_running_step():
    journal = Journal()
    control = RunControl(item_id=0)

    def abort_soon():
        time.sleep(0.3)
        control.request_stop(reason="aborted by the operator", kind="abort")

    threading.Thread(target=abort_soon, daemon=True).start()
    item = run(Flow(Step("long", step(journal, sleep_s=30)), Step("next", step(journal), require="long")),
               control=control)
    assert item.status == "aborted"
    assert states(item) == {"long": "aborted", "next": "skipped"}


def test_a_non_telescope_step_may_not_use_the_devices():
    def sneaky(ctx):
        ctx.mount.park()

    item = run(Flow(Step("sneaky", sneaky)))
    assert item.status == "failed"
    assert "step sneaky uses the mount: declare it Step(..., telescope=True)" in item.message


def test_groups_nest_and_a_sequential_group_chains_its_steps():
    journal = Journal()
    flow = Flow(Group("close_up", Step("park", step(journal), telescope=True),
                      Step("close", step(journal), telescope=True), sequential=True),
                Group("after", Step("darks", step(journal), telescope=True),
                      Group("checks", Step("disk", step(journal))), require="close_up"),
                Step("report", step(journal), require=("after/checks/disk", "close_up/park")))
    item = run(flow)
    assert item.status == "completed"
    order = journal.started()
    assert order.index("close_up/park") < order.index("close_up/close") < order.index("after/darks")
    # report needs the disk check and the park, not the darks: it starts after those two, whenever the darks do
    assert journal.span("report")[0] >= max(journal.span("after/checks/disk")[1], journal.span("close_up/park")[1])
    rows = {r.path: r for r in StepRun.objects.filter(run__item=item)}
    assert rows["after/checks/disk"].depth == 2 and rows["after/checks"].kind == "group"
    assert rows["close_up/close"].requires == [["close_up/park", "success"]]


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Flow(Step("a", print, require="nope")), "step a requires 'nope', which is no step of the flow"),
    (lambda: Flow(Step("a", print, require="b"), Step("b", print, require="a")), "make a cycle"),
    (lambda: Flow(Step("a", print), Step("a", print)), "two steps are named 'a'"),
    (lambda: Flow(Group("g", Step("a", print, require="g"))), "cannot require g"),
    (lambda: Flow(Step("a b", print)), "step name 'a b'"),
    (lambda: Flow(Step("a", print, require=(("b", "maybe"),))), "outcome one of success, failure, complete"),
    (lambda: Flow(Loop("l", [object()], Step("a", print))), "must be JSON values"),
    (lambda: Flow(Step("a", print), max_concurrent=0), "max_concurrent"),
])
def test_flows_declared_wrong_fail_before_any_step_with_a_clear_message(build, message):
    try:
        flow = build()
    except FlowError as exc:
        assert message in str(exc)
        return
    item = QueueItem.objects.create(procedure="x", params={}, timeout_s=60, sky="none", status="running")
    ctx = ProcedureContext(control=RunControl(item_id=item.pk), observatory=object(), item_uid=str(item.uid),
                           procedure="x", logger=logging.getLogger("x"))
    with pytest.raises(FlowError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_flow(flow, ctx=ctx, item=item)
    assert not FlowRun.objects.exists()


def test_recover_refuses_what_it_cannot_recover(loaded):
    calls = Journal()
    done = run(Flow(Step("a", step(calls))))
    with pytest.raises(QueueError, match="completed: every step succeeded, nothing to recover"):
        services.queue_item_recover(uid=done.uid)
    plain = QueueItem.objects.create(procedure="count_up", params={}, timeout_s=60, sky="none", status="failed")
    with pytest.raises(QueueError, match="ran no flow"):
        services.queue_item_recover(uid=plain.uid)
    with pytest.raises(QueueError, match="no queue item"):
        services.queue_item_recover(uid="not-a-uid")
    failed = run(Flow(Step("a", step(calls, fail=True))))
    again = services.queue_item_recover(uid=failed.uid)
    with pytest.raises(QueueError, match="already queued"):
        services.queue_item_recover(uid=failed.uid)
    assert QueueItem.objects.filter(status="queued").count() == 1 and again.position == 0


def test_a_run_already_recovered_is_not_recovered_again_the_latest_run_is(loaded):
    """Recovering the older run of a chain would redo what its recovery did since (duplicate frames): the
    older run is refused with the run to recover instead, and no page or API offers it."""
    calls = Journal()
    broken = {"at": {2, 3}}

    def measure(ctx):
        calls.add("start", ctx.path)
        if ctx.value in broken["at"]:
            raise RuntimeError("the camera went away")

    def flow():
        return Flow(Loop("grid", [1, 2, 3], Step("measure", measure)), max_concurrent=1)

    first = run(flow())
    assert first.status == "failed"
    services.queue_item_recover(uid=first.uid, by="test")
    QueueItem.objects.filter(recovers=first).delete()  # run here instead of by the manager
    broken["at"] = {3}
    second = run(flow(), recovers=first)
    assert second.status == "failed" and states(second)["grid/2/measure"] == "succeeded"
    with pytest.raises(QueueError, match=f"already recovered by {second.uid}, which failed: recover {second.uid}"):
        services.queue_item_recover(uid=first.uid)
    status = selectors.queue_status()
    by_uid = {i["uid"]: i for i in status["history"]}
    assert by_uid[str(first.uid)]["recoverable"] is False and by_uid[str(first.uid)]["recovered_by"] == str(second.uid)
    assert by_uid[str(second.uid)]["recoverable"] is True
    assert selectors.item_json(first)["recoverable"] is False
    assert [i["recoverable"] for i in selectors.history_list()["items"]] == [True, False]
    assert not QueueItem.objects.filter(status="queued").exists()

    broken["at"] = set()
    services.queue_item_recover(uid=second.uid)
    QueueItem.objects.filter(recovers=second).delete()
    calls.events.clear()
    third = run(flow(), recovers=second)
    assert third.status == "completed" and calls.started() == ["grid/3/measure"]
    with pytest.raises(QueueError, match="which completed: nothing is left to recover"):
        services.queue_item_recover(uid=second.uid)


def test_the_api_shows_the_steps_and_recovers_for_operators_only(loaded):
    from rest_framework.test import APIClient

    from pyrosapp.models import User
    from pyrosapp.tests.factories import UserFactory

    calls = Journal()
    failed = run(Flow(Step("a", step(calls)), Loop("l", [1, 2], Step("b", step(calls, fail=True)), require="a")))
    astro, op = APIClient(), APIClient()
    astro.force_authenticate(UserFactory(role=User.Role.ASTRONOMER))
    op.force_authenticate(UserFactory(role=User.Role.OPERATOR))
    body = astro.get(f"/api/queue/items/{failed.uid}/").json()
    assert body["item"]["is_flow"] and body["item"]["recoverable"]
    steps = {s["path"]: s for s in body["flow"]["steps"]}
    assert list(steps) == ["a", "l", "l/1", "l/1/b", "l/2", "l/2/b"]
    assert steps["l/1"]["parent"] == "l" and steps["l/1"]["value"] == 1 and steps["l/1/b"]["depth"] == 2
    assert steps["l/1/b"]["state"] == "failed" and "RuntimeError: l/1/b broke" in steps["l/1/b"]["message"]
    assert body["flow"]["counts"]["succeeded"] == 1 and body["flow"]["counts"]["pending"] == 1
    r = astro.post("/api/queue/history/recover/", {"uid": str(failed.uid)}, format="json")
    assert r.status_code == 403 and not QueueItem.objects.filter(recovers=failed).exists()
    r = op.post("/api/queue/history/recover/", {"uid": str(failed.uid)}, format="json")
    assert r.status_code == 200 and r.json()["success"] and r.json()["item"]["recovers"] == str(failed.uid)
    r = op.post("/api/queue/history/recover/", {"uid": str(failed.uid)}, format="json")
    assert r.status_code == 409 and r.json()["success"] is False and "already queued" in r.json()["msg"]
    assert op.get(f"/api/queue/items/{failed.uid}/").json()["flow"]["recoveries"][0]["status"] == "queued"
    schema = op.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/queue/history/recover/" in schema["paths"]


def test_a_flow_stopped_by_a_pause_now_is_queued_again_as_a_recovery(loaded):
    journal = Journal()
    control = RunControl(item_id=0)

    def pause_soon():
        time.sleep(0.3)
        QueueItem.objects.filter(pk=control.item_id).update(abort_requested="pause")
        control.request_stop(reason="queue paused now by the operator", kind="stop")

    threading.Thread(target=pause_soon, daemon=True).start()
    stopped = run(Flow(Step("first", step(journal)), Step("long", step(journal, sleep_s=30), require="first")),
                  control=control)
    assert stopped.status == "stopped" and states(stopped) == {"first": "succeeded", "long": "aborted"}
    again = QueueItem.objects.get(status="queued")
    assert again.recovers_id == stopped.pk and again.position == 0
    journal.events.clear()
    QueueItem.objects.filter(pk=again.pk).delete()
    resumed = run(Flow(Step("first", step(journal)), Step("long", step(journal), require="first")), recovers=stopped)
    assert resumed.status == "completed" and journal.started() == ["long"]


class _Exposure:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def wait(self, timeout_s: float) -> bytes:
        return self.data


class _Camera:
    """A camera that returns a small FITS frame at once."""

    def start_exposure(self, *, duration_s, frame_type, binning, object_name):
        import io

        import numpy as np
        from astropy.io import fits

        out = io.BytesIO()
        fits.PrimaryHDU(np.full((16, 16), 1000, dtype=np.uint16)).writeto(out)
        return _Exposure(out.getvalue())

    def temperature_c(self) -> float:
        return -10.0


class _Observatory:
    filter_wheel = None
    mount = None
    camera = _Camera()


def test_the_frames_of_an_interrupted_step_are_recorded_and_a_recovery_keeps_them(loaded, settings, tmp_path):
    from pyros.demo import seed_demo
    from pyrosapp.models import Image

    seed_demo()
    settings.PYROS_DATA_DIR = tmp_path / "data"
    dies = {"after_the_frame": True}

    def shoot(ctx):
        if ctx.earlier_images:  # the frame of the attempt that was cut short
            ctx.publish(image=ctx.earlier_images[-1]["id"], kept=True)
            return
        frame = ctx.expose(0.1, frame_type="dark", target="flow-test")
        frame.wait_saved()
        if dies["after_the_frame"]:  # where a kill -9 hurts: the frame stored, the step not yet ended
            raise RuntimeError("cut short after the frame was stored")
        ctx.publish(image=frame.image_id)

    flow = lambda: Flow(Loop("grid", [1, 2], Step("shoot", shoot, telescope=True)))  # noqa: E731
    first = run(flow(), observatory=_Observatory())
    assert first.status == "failed"
    image = Image.objects.get()
    assert StepRun.objects.get(run__item=first, path="grid/1/shoot").images == [image.pk]
    dies["after_the_frame"] = False
    second = run(flow(), recovers=first, observatory=_Observatory())
    assert second.status == "completed", second.message
    rows = {r.path: r for r in StepRun.objects.filter(run__item=second, kind="step")}
    assert rows["grid/1/shoot"].data == {"image": image.pk, "kept": True}
    assert rows["grid/1/shoot"].images == [image.pk]  # carried over: a later recovery knows it too
    assert Image.objects.count() == 2 and rows["grid/2/shoot"].images == [rows["grid/2/shoot"].data["image"]]
    assert len(list((tmp_path / "data").rglob("*.fits"))) == 2


def test_the_item_page_is_read_only_for_astronomers_and_offers_recover_to_operators(loaded, client):
    import uuid

    from pyrosapp.models import User
    from pyrosapp.tests.factories import UserFactory

    failed = run(Flow(Step("a", step(Journal(), fail=True))))
    client.force_login(UserFactory(role=User.Role.ASTRONOMER))
    html = client.get(f"/procedures/items/{failed.uid}/").content.decode()
    assert "count_up" in html and 'id="flow-tree"' in html and 'id="recover-btn"' not in html
    assert client.get(f"/procedures/items/{uuid.uuid4()}/").status_code == 404
    client.force_login(UserFactory(role=User.Role.OPERATOR))
    html = client.get(f"/procedures/items/{failed.uid}/").content.decode()
    assert 'id="recover-btn"' in html and "the steps that succeeded are not run again" in html


def test_a_step_failing_with_procedure_error_reads_as_its_message(loaded):
    """A ProcedureError is the procedure's message for the operator: no class name in front of it (other
    exceptions keep theirs)."""
    def solve(ctx):
        raise ProcedureError("no star in the frame")

    item = run(Flow(Step("solve", solve)))
    row = StepRun.objects.get(run__item=item, path="solve")
    assert row.state == "failed" and row.message == "no star in the frame"
    assert item.message.endswith("failed: no star in the frame") and "ProcedureError" not in item.message
