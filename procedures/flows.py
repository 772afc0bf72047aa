"""The flow engine: runs the steps of a procedure that returned a :class:`procedures.sdk.Flow`, in the worker.

The flow becomes a tree of nodes (steps, groups, loops and their iterations), stored at once as StepRun rows
of a FlowRun (every node pending), so the page shows the whole tree from the start. A scheduler in the
procedure's thread starts each step whose requirements are met in a pool of ``max_concurrent`` threads —
one telescope step at a time — and records every transition (running, then succeeded, failed, skipped or
aborted, with timestamps and the step's published data) as it happens. Containers take the state of their
children.

Recovery: an item queued with ``recovers`` (``services.queue_item_recover``) starts from the previous run's
rows: every step that succeeded there — with the same loop value for the iterations it is in, and whose
requirements were themselves all taken over — is marked succeeded (``reused``) with its data, and only the
rest runs. A loop's finished iterations are therefore skipped one by one.

Stopping: an abort (the worker's watcher) stops new steps and interrupts the running ones (the item ends
aborted or stopped); a failing step, with ``stop_on_failure``, stops new steps except clean-up steps (those
that require a failure or any outcome) and lets the running ones finish; the item ends failed. A killed worker
leaves its running steps to ``services.queue_item_finish``, which fails them."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
import traceback as tb_module
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from django.db import close_old_connections
from django.utils import timezone

from devices.errors import DeviceError
from procedures.models import FlowRun, QueueItem, StepRun
from procedures.sdk import Flow, FlowError, Group, Loop, ProcedureAborted, Step, failure_message

log = logging.getLogger("pyros.procedures")

S = StepRun.State
ENDED = {S.SUCCEEDED, S.FAILED, S.SKIPPED, S.ABORTED}
FLUSH_EVERY_S = 0.25
DEVICES = ("mount", "dome", "filter_wheel", "camera", "focuser")


class FlowFailed(Exception):
    """The flow ended with failed steps: the item fails with the first failure's message and traceback."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


@dataclass(eq=False)
class Node:
    path: str
    name: str
    kind: str  # step, group, loop, iteration
    parent: Node | None
    order: int
    depth: int
    title: str = ""
    telescope: bool = False
    value: object = None
    index: int | None = None
    raw_require: tuple = ()
    children: list = field(default_factory=list)
    requires: list = field(default_factory=list)  # [(Node, outcome)] declared (and sequential) requirements
    after: Node | None = None  # the previous iteration of a loop (order, not a dependency)
    func: Callable | None = None
    params: dict = field(default_factory=dict)
    state: str = S.PENDING
    reused: bool = False
    data: dict = field(default_factory=dict)
    images: list = field(default_factory=list)  # Image ids stored by this step (and its interrupted attempts)
    earlier_images: list = field(default_factory=list)  # [{"id", "path"}] of an attempt that did not succeed
    message: str = ""
    traceback: str = ""
    started_at: object = None
    ended_at: object = None
    row_id: int | None = None
    dirty: bool = False

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def leaves(self):
        if self.kind == "step":
            yield self
            return
        for child in self.children:
            yield from child.leaves()


# --- building the tree -------------------------------------------------------------------------------------
class Tree:
    def __init__(self, flow: Flow, *, resolve_procedure: Callable | None = None) -> None:
        if not isinstance(flow, Flow):
            raise FlowError(f"a flow procedure returns a Flow, not {type(flow).__name__}")
        self.flow = flow
        self.nodes: list[Node] = []
        self.by_path: dict[str, Node] = {}
        self.resolve_procedure = resolve_procedure
        self.roots = self._add(flow.steps, None, flow.sequential)
        for node in self.nodes:
            node.requires = [(self.resolve(node.parent, name, asking=node), outcome)
                             for name, outcome in node.raw_require] + node.requires
        self.leaves = [n for n in self.nodes if n.kind == "step"]
        self._effective = {leaf: self._effective_requirements(leaf) for leaf in self.leaves}
        self._check_cycles()

    def _node(self, **kw) -> Node:
        node = Node(order=len(self.nodes), **kw)
        self.nodes.append(node)
        self.by_path[node.path] = node
        return node

    def _add(self, specs, parent: Node | None, sequential: bool) -> list[Node]:
        out, previous = [], None
        prefix = f"{parent.path}/" if parent else ""
        depth = parent.depth + 1 if parent else 0
        for spec in specs:
            path = prefix + spec.name
            if isinstance(spec, Step):
                node = self._node(path=path, name=spec.name, kind="step", parent=parent, depth=depth,
                                  title=spec.title, telescope=spec.telescope, raw_require=spec.require)
                node.func, node.params = self._callable(spec, path)
            elif isinstance(spec, Group):
                node = self._node(path=path, name=spec.name, kind="group", parent=parent, depth=depth,
                                  title=spec.title, raw_require=spec.require)
                node.children = self._add(spec.steps, node, spec.sequential)
            elif isinstance(spec, Loop):
                node = self._node(path=path, name=spec.name, kind="loop", parent=parent, depth=depth,
                                  title=spec.title, raw_require=spec.require)
                before = None
                for i, (key, value) in enumerate(zip(spec.keys, spec.values, strict=True)):
                    it = self._node(path=f"{path}/{key}", name=key, kind="iteration", parent=node, depth=depth + 1,
                                    value=value, index=i)
                    it.after = None if spec.overlap else before
                    it.children = self._add(spec.steps, it, spec.sequential)
                    node.children.append(it)
                    before = it
            else:  # the sdk's constructors refuse anything else
                raise FlowError(f"{spec!r} is not a Step, Group or Loop")
            if sequential and previous is not None:
                node.requires.append((previous, "success"))
            previous = node
            out.append(node)
        return out

    def _callable(self, spec: Step, path: str) -> tuple[Callable, dict]:
        if callable(spec.run):
            return spec.run, spec.params
        if self.resolve_procedure is None:
            raise FlowError(f"step {path}: procedure steps ({spec.run!r}) need the loaded procedures")
        from procedures.schema import validate_params

        func, schema = self.resolve_procedure(spec.run)
        clean, errors = validate_params(schema, spec.params)
        if errors:
            raise FlowError(f"step {path}: procedure {spec.run}: invalid parameters: " + "; ".join(errors))
        return func, clean

    def resolve(self, scope: Node | None, name: str, *, asking: Node | None = None) -> Node:
        """A step's name as seen from ``scope``: in that container, then outward."""
        while True:
            target = self.by_path.get(f"{scope.path}/{name}" if scope else name)
            if target is not None:
                break
            if scope is None:
                where = f"step {asking.path}" if asking else "the flow"
                raise FlowError(f"{where} requires {name!r}, which is no step of the flow")
            scope = scope.parent
        if asking is not None and (target is asking or target in asking.ancestors()
                                   or asking in target.ancestors()):
            raise FlowError(f"step {asking.path} cannot require {target.path} (it contains it or is in it)")
        return target

    def _effective_requirements(self, leaf: Node) -> list[tuple[Node, str]]:
        out = list(leaf.requires)
        for a in leaf.ancestors():
            out.extend(a.requires)
        return out

    def _check_cycles(self) -> None:
        deps = {}
        for leaf in self.leaves:
            targets = set()
            for target, _ in self._effective[leaf]:
                targets.update(target.leaves())
            for a in leaf.ancestors():
                if a.after is not None:
                    targets.update(a.after.leaves())
            deps[leaf] = targets
        state: dict[Node, int] = {}
        for start in self.leaves:
            if state.get(start):
                continue
            stack = [(start, iter(deps[start]))]
            state[start] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                elif state.get(nxt) == 1:
                    raise FlowError(f"the requirements of {nxt.path} and {node.path} make a cycle")
                elif not state.get(nxt):
                    state[nxt] = 1
                    stack.append((nxt, iter(deps[nxt])))


# --- states -----------------------------------------------------------------------------------------------
def container_state(states: list[str], *, active: bool = True) -> str:
    """A container's state from its children's: running while any runs (or, in an active run, while some
    ended and others wait), failed or aborted as soon as one is, succeeded once all ended (skipped if all
    were skipped), pending before."""
    if not states:
        return S.SUCCEEDED
    if any(s == S.RUNNING for s in states):
        return S.RUNNING
    if any(s == S.FAILED for s in states):
        return S.FAILED
    if any(s == S.ABORTED for s in states):
        return S.ABORTED
    if all(s in ENDED for s in states):
        return S.SKIPPED if all(s == S.SKIPPED for s in states) else S.SUCCEEDED
    if active and any(s in ENDED for s in states):
        return S.RUNNING
    return S.PENDING


def _states(tree: Tree, *, active: bool = True) -> tuple[dict[Node, str], dict[Node, bool]]:
    """Every node's state and whether it has ended (a container: every step inside it)."""
    state, ended = {}, {}
    for node in reversed(tree.nodes):  # children come after their parent
        if node.kind == "step":
            state[node], ended[node] = node.state, node.state in ENDED
        else:
            kids = [state[c] for c in node.children]
            ended[node] = all(ended[c] for c in node.children)
            state[node] = container_state(kids, active=active)
    return state, ended


def _verdict(target: Node, outcome: str, state, ended) -> bool | None:
    """True: the requirement is met; False: it never will be; None: not yet."""
    st, done = state[target], ended[target]
    if outcome == "success":
        if st == S.SUCCEEDED and done:
            return True
        return False if st in (S.FAILED, S.ABORTED, S.SKIPPED) else None
    if not done:
        return None
    if outcome == "failure":
        return st == S.FAILED
    return True  # complete


OUTCOME_WORDS = {"success": "to succeed", "failure": "to fail", "complete": "to end"}


# --- what a step gets ---------------------------------------------------------------------------------------
class StepData(Mapping):
    """``ctx.data[name]``: what another step published (and returned, as ``result``); a loop gives the list
    of its iterations (each ``{step name: data}``), a group ``{step name: data}``. Names are looked up like
    requirements: the step's own container first (so inside a loop, this iteration's steps), then outward."""

    def __init__(self, engine: FlowEngine, node: Node) -> None:
        self.engine, self.node = engine, node

    def __getitem__(self, name: str):
        try:
            target = self.engine.tree.resolve(self.node.parent, name)
        except FlowError as exc:
            raise KeyError(name) from exc
        return self.engine.data_of(target)

    def _names(self) -> list[str]:
        names, scope = [], self.node.parent
        for n in (scope.children if scope else self.engine.tree.roots):
            if n is not self.node:
                names.append(n.name)
        return names

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


class _StepLog(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"[{self.extra['path']}] {msg}", kwargs


class StepContext:
    """The ``ctx`` of a step: the procedure's context (devices, log, sleep, check, expose...), with the step's
    own ``publish`` and progress, ``data`` (other steps' published data), and in a loop ``value``, ``index``
    and ``key``. A step not declared ``telescope=True`` may not use the devices (that is what lets the
    engine run it beside a telescope step)."""

    def __init__(self, base, engine: FlowEngine, node: Node) -> None:
        self._base, self._engine, self._node = base, engine, node
        self.path, self.name = node.path, node.name
        self.log = _StepLog(base.log, {"path": node.path})
        self.data = StepData(engine, node)
        iteration = next((a for a in node.ancestors() if a.kind == "iteration"), None)
        self.value = iteration.value if iteration else None
        self.index = iteration.index if iteration else None
        self.key = iteration.name if iteration else None
        self.values = {a.parent.name: a.value for a in node.ancestors() if a.kind == "iteration"}
        # Frames an earlier attempt of this step stored before it was cut short (a worker killed between a
        # frame's save and the step's end): [{"id": image id, "path": ...}], oldest first. A step may keep
        # them instead of exposing again.
        self.earlier_images = list(node.earlier_images)
        self._saves: list = []

    def __getattr__(self, name: str):
        if name in DEVICES:
            self._need_telescope(name)
        return getattr(self._base, name)

    def _need_telescope(self, what: str) -> None:
        if not self._node.telescope:
            from procedures.sdk import ProcedureError

            raise ProcedureError(f"step {self.path} uses the {what.replace('_', ' ')}: declare it "
                                 "Step(..., telescope=True)")

    def expose(self, *args, **kwargs):
        """``ctx.expose``; each frame's Image id is recorded with the step in the transaction that creates
        the row, so a recovery knows the frames of an attempt that was cut short."""
        self._need_telescope("camera")
        frame = self._base.expose(*args, on_saved=self._engine.recorder(self._node), **kwargs)
        if frame._saving is not None:
            self._saves.append(frame._saving)
        return frame

    def wait_saves(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        for future in self._saves:
            future.result(max(0.1, deadline - time.monotonic()))

    def run(self, task: str, *args, **options):
        """``ctx.run`` of procedures.fanout, its result joining this step's data."""
        from procedures.fanout import context_run

        return context_run(self, task, *args, **options)

    def group(self, task: str, values, *args, **options):
        """``ctx.group`` of procedures.fanout, its results joining this step's data."""
        from procedures.fanout import context_group

        return context_group(self, task, values, *args, **options)

    def script(self, path, params: dict | None = None, **options):
        """``ctx.script`` of procedures.external, its published data and log lines this step's."""
        from procedures.external import context_script

        return context_script(self, path, params, **options)

    def publish(self, **data) -> None:
        """Data of this step (stored with it; later steps read it through ``ctx.data``): JSON values only."""
        json.dumps(data)
        with self._engine.lock:
            self._node.data.update(data)
            self._node.dirty = True

    def publish_item(self, **data) -> None:
        """Data of the whole item (its history, ``published`` in the API)."""
        self._base.publish(**data)

    def set_progress(self, current: float, total: float | None = None, message: str = "") -> None:
        text = f"{current:g}" + (f"/{total:g}" if total else "") + (f" {message}" if message else "")
        with self._engine.lock:
            self._node.message = text[:300]
            self._node.dirty = True


# --- the engine ------------------------------------------------------------------------------------------
class FlowEngine:
    def __init__(self, flow: Flow, *, ctx, item: QueueItem, resolve_procedure: Callable | None = None) -> None:
        self.tree = Tree(flow, resolve_procedure=resolve_procedure)
        self.flow, self.ctx, self.item = flow, ctx, item
        self.lock = threading.Lock()
        self.run: FlowRun | None = None
        self.first_failure: Node | None = None

    # data -----------------------------------------------------------------------------------------
    def data_of(self, node: Node):
        if node.kind == "step":
            with self.lock:
                return json.loads(json.dumps(node.data))
        if node.kind == "loop":
            return [self.data_of(it) for it in node.children]
        return {c.name: self.data_of(c) for c in node.children}

    def recorder(self, node: Node):
        def record(image) -> None:  # in the saver's thread, inside the transaction creating the Image row
            with self.lock:
                node.images.append(image.pk)
                ids = list(node.images)
            StepRun.objects.filter(pk=node.row_id).update(images=ids)

        return record

    # recovery ---------------------------------------------------------------------------------------
    def _take_over(self, previous: FlowRun) -> int:
        rows = {r.path: r for r in previous.steps.all()}
        candidates = set()
        for leaf in self.tree.leaves:
            row = rows.get(leaf.path)
            if row is None or row.kind != "step" or row.state != S.SUCCEEDED:
                continue
            same = True
            for a in leaf.ancestors():
                if a.kind == "iteration":
                    old = rows.get(a.path)
                    if old is None or json.dumps(old.value, sort_keys=True) != json.dumps(a.value, sort_keys=True):
                        same = False
                        break
            if same:
                candidates.add(leaf)
        changed = True
        while changed:  # a step is taken over only if everything it requires is taken over too
            changed = False
            for leaf in list(candidates):
                for target, _ in self.tree._effective[leaf]:
                    if not all(x in candidates for x in target.leaves()):
                        candidates.discard(leaf)
                        changed = True
                        break
        from pyrosapp.models import Image

        for leaf in self.tree.leaves:  # frames stored by earlier attempts stay with the step
            row = rows.get(leaf.path)
            if row is not None and row.kind == "step" and row.images:
                leaf.images = list(row.images)
                if leaf not in candidates:
                    paths = dict(Image.objects.filter(pk__in=row.images).values_list("pk", "file_path"))
                    leaf.earlier_images = [{"id": i, "path": paths[i]} for i in row.images if i in paths]
        for leaf in candidates:
            row = rows[leaf.path]
            leaf.state, leaf.reused, leaf.data = S.SUCCEEDED, True, dict(row.data or {})
            leaf.started_at, leaf.ended_at = row.started_at, row.ended_at
            leaf.message = "succeeded in an earlier run"
        return len(candidates)

    # storage --------------------------------------------------------------------------------------
    def _create_rows(self) -> None:
        previous = None
        if self.item.recovers_id:
            previous = FlowRun.objects.filter(item_id=self.item.recovers_id).first()
        self.run = FlowRun.objects.create(item=self.item, recovered_from=previous,
                                          max_concurrent=self.flow.max_concurrent,
                                          stop_on_failure=self.flow.stop_on_failure, started_at=timezone.now())
        reused = self._take_over(previous) if previous else 0
        state, _ = _states(self.tree)
        rows = []
        for n in self.tree.nodes:
            if n.kind != "step":
                n.state = state[n]
            rows.append(StepRun(
                run=self.run, path=n.path, name=n.name, parent_path=n.parent.path if n.parent else "", kind=n.kind,
                order=n.order, depth=n.depth, title=n.title[:200], telescope=n.telescope,
                requires=[[t.path, o] for t, o in n.requires], value=n.value, state=n.state, reused=n.reused,
                data=n.data, images=n.images, message=n.message, started_at=n.started_at, ended_at=n.ended_at))
        StepRun.objects.bulk_create(rows, batch_size=500)
        ids = dict(StepRun.objects.filter(run=self.run).values_list("path", "id"))
        for n in self.tree.nodes:
            n.row_id = ids[n.path]
        if previous:
            self.ctx.log.info("recovery of run %s: %d of %d step(s) succeeded there and are not run again",
                              previous.item.uid, reused, len(self.tree.leaves))

    def _save(self, node: Node, **fields) -> None:
        StepRun.objects.filter(pk=node.row_id).update(**fields)

    def _save_containers(self, *, active: bool = True) -> None:
        state, ended = _states(self.tree, active=active)
        for n in self.tree.nodes:
            if n.kind == "step" or state[n] == n.state:
                continue
            n.state = state[n]
            leaves = list(n.leaves())
            # In a recovery run a container starts when its first step of this run does: the steps taken over
            # from the earlier run (their own times) would stretch it over the gap between the runs.
            started = ([x.started_at for x in leaves if x.started_at and not x.reused]
                       or [x.started_at for x in leaves if x.started_at])
            fields = {"state": n.state, "started_at": min(started) if started else None,
                      "ended_at": max((x.ended_at for x in leaves if x.ended_at), default=None) if ended[n] else None}
            self._save(n, **fields)

    def _flush_running(self) -> None:
        for leaf in self.tree.leaves:
            if leaf.dirty and leaf.state == S.RUNNING:
                with self.lock:
                    leaf.dirty = False
                    data, message = json.loads(json.dumps(leaf.data)), leaf.message
                self._save(leaf, data=data, message=message)

    def _progress(self) -> None:
        done = sum(1 for leaf in self.tree.leaves if leaf.state in ENDED)
        running = [leaf.path for leaf in self.tree.leaves if leaf.state == S.RUNNING]
        self.ctx.set_progress(done, len(self.tree.leaves), ("running " + ", ".join(running)) if running else "")

    # one step, in a pool thread -----------------------------------------------------------------------
    def _execute(self, node: Node) -> None:
        from procedures.sdk import ProcedureError

        step_ctx = StepContext(self.ctx, self, node)
        control = self.ctx.control
        node.started_at = timezone.now()
        state, message, tb = S.FAILED, "", ""
        try:
            self._save(node, state=S.RUNNING, started_at=node.started_at)
            self.ctx.check()
            result = node.func(step_ctx, **node.params)
            step_ctx.wait_saves()
            if isinstance(result, Flow):
                raise ProcedureError(f"step {node.path} returned a Flow: flows do not nest as steps (use a Group)")
            if result is not None:
                try:
                    json.dumps(result)
                except (TypeError, ValueError):
                    result = repr(result)[:2000]
                with self.lock:
                    node.data["result"] = result
            state, message = S.SUCCEEDED, ""
        except (ProcedureAborted, DeviceError) as exc:
            control.refresh()
            if control.aborted.is_set():
                state, message = S.ABORTED, control.stop_reason or "aborted"
            else:
                state, message, tb = S.FAILED, failure_message(exc), tb_module.format_exc()
        except BaseException as exc:  # the step's own error: it fails with its traceback
            state, message, tb = S.FAILED, failure_message(exc), tb_module.format_exc()
        try:
            for future in step_ctx._saves:  # a failed step's frames are still stored before it ends
                if not future.done():
                    future.result(60)
        except Exception as exc:  # noqa: BLE001
            if state == S.SUCCEEDED:
                state, message, tb = S.FAILED, f"frame not saved: {exc}", tb_module.format_exc()
        with self.lock:
            node.ended_at = timezone.now()
            data = json.loads(json.dumps(node.data))
            node.message = message[:5000] if state != S.SUCCEEDED else ""  # a success keeps no progress note
            node.traceback = tb
            node.dirty = False
        try:
            self._save(node, state=state, ended_at=node.ended_at, data=data, message=node.message,
                       traceback=tb[-20000:])
        finally:
            node.state = state  # after the row: whoever sees it ended finds the row ended
            if state == S.FAILED:
                self.step_log(node).error("failed: %s", message)
            close_old_connections()

    def step_log(self, node: Node):
        return _StepLog(self.ctx.log, {"path": node.path})

    # the scheduler --------------------------------------------------------------------------------
    def run_flow(self) -> dict:
        self._create_rows()
        tree, ctx = self.tree, self.ctx
        handlers = {leaf for leaf in tree.leaves
                    if any(o != "success" for _, o in tree._effective[leaf])}
        pending = [leaf for leaf in tree.leaves if leaf.state == S.PENDING]
        running: dict[concurrent.futures.Future, Node] = {}
        telescope_busy = failed = stopping = False
        last_flush = 0.0
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.flow.max_concurrent,
                                                     thread_name_prefix=f"pyros-flow-{self.item.pk}")
        try:
            self._save_containers()
            self._progress()
            while True:
                if ctx.control.aborted.is_set():
                    stopping = True
                state, ended = _states(tree)
                changed = skipping = self._skip_impossible(pending, state, ended)
                while skipping:  # a skipped step may make its own dependants impossible
                    state, ended = _states(tree)
                    skipping = self._skip_impossible(pending, state, ended)
                if not stopping:
                    for leaf in pending:
                        if len(running) >= self.flow.max_concurrent:
                            break
                        if leaf.state != S.PENDING or (leaf.telescope and telescope_busy):
                            continue
                        if failed and self.flow.stop_on_failure and leaf not in handlers:
                            continue
                        if not self._ready(leaf, state, ended):
                            continue
                        leaf.state = S.RUNNING
                        telescope_busy = telescope_busy or leaf.telescope
                        running[pool.submit(self._execute, leaf)] = leaf
                        changed = True
                    pending = [leaf for leaf in pending if leaf.state == S.PENDING]
                if changed:
                    self._save_containers()
                    self._progress()
                if not running:
                    break
                done, _ = concurrent.futures.wait(list(running), timeout=0.1,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    leaf = running.pop(future)
                    future.result()  # _execute records its own errors; this raises only on a bug
                    if leaf.telescope:
                        telescope_busy = False
                    if leaf.state == S.FAILED:
                        failed = True
                        self.first_failure = self.first_failure or leaf
                if done:
                    self._save_containers()
                    self._progress()
                now = time.monotonic()
                if now - last_flush >= FLUSH_EVERY_S:
                    self._flush_running()
                    last_flush = now
        finally:
            pool.shutdown(wait=True)
            self._flush_running()
            self._save_containers(active=False)
            FlowRun.objects.filter(pk=self.run.pk).update(ended_at=timezone.now())
        counts = self.counts()
        ctx.publish(flow=counts)
        words = {"reused": "taken over from the earlier run", "not_run": "not run"}
        ended_note = ", ".join(f"{n} {words.get(what, what)}" for what, n in counts.items() if n and what != "steps")
        ctx.set_progress(sum(1 for x in tree.leaves if x.state in ENDED), len(tree.leaves),
                         f"flow ended: {ended_note}" if ended_note else "flow ended")
        if stopping or ctx.control.aborted.is_set():
            ctx.check()
        if self.first_failure is not None:
            f = self.first_failure
            raise FlowFailed(f"step {f.path} failed: {f.message}", f.traceback)
        if counts["not_run"]:
            raise FlowFailed(f"{counts['not_run']} step(s) could not run (their requirements were never met)")
        return counts

    def _skip_impossible(self, pending: list[Node], state, ended) -> bool:
        """Steps whose requirements can no longer be met are skipped (with the reason)."""
        skipped = False
        for leaf in pending:
            if leaf.state != S.PENDING:
                continue
            for target, outcome in self.tree._effective[leaf]:
                if _verdict(target, outcome, state, ended) is False:
                    leaf.state, leaf.ended_at = S.SKIPPED, timezone.now()
                    leaf.message = f"needs {target.path} {OUTCOME_WORDS[outcome]} (it {state[target]})"
                    self._save(leaf, state=S.SKIPPED, ended_at=leaf.ended_at, message=leaf.message)
                    skipped = True
                    break
        return skipped

    def _ready(self, leaf: Node, state, ended) -> bool:
        for target, outcome in self.tree._effective[leaf]:
            if _verdict(target, outcome, state, ended) is not True:
                return False
        for a in leaf.ancestors():
            if a.after is not None and not ended[a.after]:
                return False
        return True

    def counts(self) -> dict:
        leaves = self.tree.leaves
        return {"steps": len(leaves),
                "succeeded": sum(1 for x in leaves if x.state == S.SUCCEEDED and not x.reused),
                "reused": sum(1 for x in leaves if x.reused),
                "failed": sum(1 for x in leaves if x.state == S.FAILED),
                "aborted": sum(1 for x in leaves if x.state == S.ABORTED),
                "skipped": sum(1 for x in leaves if x.state == S.SKIPPED),
                "not_run": sum(1 for x in leaves if x.state == S.PENDING)}


def run_flow(flow: Flow, *, ctx, item: QueueItem, resolve_procedure: Callable | None = None) -> dict:
    """Run the flow of ``item`` to its end (raises FlowFailed, ProcedureAborted or FlowError); returns the
    counts of its steps by outcome."""
    return FlowEngine(flow, ctx=ctx, item=item, resolve_procedure=resolve_procedure).run_flow()


# --- the end of an item, whoever records it ----------------------------------------------------------------
def flow_run_close(*, item_id: int, status: str, message: str) -> None:
    """Steps still running when an item ends (its worker killed, lost, timed out) end with it: aborted on an
    abort or a stop, failed otherwise, with the item's message. Containers follow."""
    run = FlowRun.objects.filter(item_id=item_id).first()
    if run is None:
        return
    now = timezone.now()
    state = S.ABORTED if status in (QueueItem.Status.ABORTED, QueueItem.Status.STOPPED) else S.FAILED
    StepRun.objects.filter(run=run, state=S.RUNNING).update(state=state, ended_at=now,
                                                            message=f"interrupted: {message}"[:5000])
    FlowRun.objects.filter(pk=run.pk, ended_at__isnull=True).update(ended_at=now)
