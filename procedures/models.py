"""The procedures app's tables: the modules and procedures of the last reload, the queue's state (one row)
and the queue's items, which become its history once they end. Everything the queue is lives here, so it
survives a restart of every process."""

from __future__ import annotations

import uuid

from django.db import models


class ProcedureModule(models.Model):
    """A module of the procedures folder as it was at the last reload (its source is what the worker runs)."""

    name = models.CharField(max_length=100, unique=True)
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    source = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="traceback of the import, when it failed")
    loaded_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Procedure(models.Model):
    name = models.CharField(max_length=100, unique=True)
    module = models.ForeignKey(ProcedureModule, on_delete=models.CASCADE, related_name="procedures")
    function = models.CharField(max_length=100)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    schema = models.JSONField(default=dict)
    timeout_s = models.FloatField()
    sky = models.CharField(max_length=10, help_text="dark, twilight or none (may run by day)")
    tags = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class QueueState(models.Model):
    """The queue's switches (operators) and what the queue manager reports (one row). ``version`` grows on
    every change so that live pages skip unchanged data."""

    class Env(models.TextChoices):
        CLOSED = "closed", "closed"
        OPENING = "opening", "opening"
        IDLE = "idle", "idle"
        BUSY = "busy", "running an item"
        CLOSING = "closing", "closing"
        FAILED = "failed", "failed to open"

    running = models.BooleanField(default=False, help_text="started: items run one after the other")
    paused = models.BooleanField(default=False)
    pause_requested = models.CharField(max_length=10, blank=True, help_text="'deferred': after the current item")
    block_until = models.DateTimeField(null=True, blank=True,
                                       help_text="a procedure block: in automatic mode the queue may run until then")
    env_command = models.CharField(max_length=10, blank=True, help_text="open, close or restart, for the manager")
    env_status = models.CharField(max_length=10, choices=Env.choices, default=Env.CLOSED)
    env_pid = models.IntegerField(null=True, blank=True)
    manager_heartbeat = models.DateTimeField(null=True, blank=True)
    waiting_reason = models.CharField(max_length=300, blank=True)
    version = models.PositiveBigIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"queue ({'started' if self.running else 'stopped'})"


class QueueItem(models.Model):
    """One procedure run with its parameters: queued, running, then history with its outcome."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        ABORTED = "aborted", "aborted"
        STOPPED = "stopped", "stopped"

    ENDED = (Status.COMPLETED, Status.FAILED, Status.ABORTED, Status.STOPPED)

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    procedure = models.CharField(max_length=100, help_text="its name (history outlives the procedure)")
    params = models.JSONField(default=dict, blank=True)
    position = models.IntegerField(default=0, db_index=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    timeout_s = models.FloatField()
    sky = models.CharField(max_length=10)
    added_by = models.CharField(max_length=254, blank=True)
    added_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True, db_index=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    progress_current = models.FloatField(null=True, blank=True)
    progress_total = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=300, blank=True)
    published = models.JSONField(default=dict, blank=True, help_text="what the procedure published (ctx.publish)")
    log = models.JSONField(default=list, blank=True, help_text="[[iso time, level, message], ...]")
    message = models.TextField(blank=True, help_text="the outcome in words")
    traceback = models.TextField(blank=True)
    abort_requested = models.CharField(max_length=10, blank=True, help_text="'abort' or 'pause' (stop now, queue again)")
    module_sha256 = models.CharField(max_length=64, blank=True, help_text="the module version that ran")
    requeued_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    recovers = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="recoveries",
                                 help_text="a recovery run: the flow item whose succeeded steps it skips")

    class Meta:
        ordering = ["position", "id"]
        indexes = [models.Index(fields=["status", "position"])]

    def __str__(self) -> str:
        return f"{self.procedure} ({self.status})"


class FlowRun(models.Model):
    """The run of a flow procedure (one per queue item that ran a flow): its steps are StepRun rows."""

    item = models.OneToOneField(QueueItem, on_delete=models.CASCADE, related_name="flow")
    recovered_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    max_concurrent = models.PositiveIntegerField(default=1)
    stop_on_failure = models.BooleanField(default=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"flow of {self.item}"


class StepRun(models.Model):
    """One node of a flow run: a step (``kind`` step), a container (group, loop) or a loop's iteration, with
    its state, timestamps and published data. ``path`` names it ("grid/4/expose"); ``reused``: it succeeded
    in the run recovered from, and this run took its data instead of running it again."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped"
        ABORTED = "aborted", "aborted"

    ENDED = (State.SUCCEEDED, State.FAILED, State.SKIPPED, State.ABORTED)

    run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="steps")
    path = models.CharField(max_length=500)
    name = models.CharField(max_length=80)
    parent_path = models.CharField(max_length=500, blank=True)
    kind = models.CharField(max_length=10, help_text="step, group, loop or iteration")
    order = models.PositiveIntegerField(help_text="place in the tree (depth first)")
    depth = models.PositiveSmallIntegerField(default=0)
    title = models.CharField(max_length=200, blank=True)
    telescope = models.BooleanField(default=False)
    requires = models.JSONField(default=list, blank=True, help_text="[[path, outcome], ...]")
    value = models.JSONField(null=True, blank=True, help_text="a loop iteration's value")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    reused = models.BooleanField(default=False)
    data = models.JSONField(default=dict, blank=True, help_text="what the step published (and its result)")
    images = models.JSONField(default=list, blank=True, help_text="ids of the Image rows the step stored, each "
                              "recorded in the transaction that created the row (interrupted attempts included)")
    message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "order"]
        constraints = [models.UniqueConstraint(fields=["run", "path"], name="procedures_steprun_unique_path")]

    def __str__(self) -> str:
        return f"{self.path} ({self.state})"
