from __future__ import annotations

from django.conf import settings
from django.db import models


class RequestStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    SCHEDULED = "scheduled", "Scheduled"
    EXECUTING = "executing", "Executing"
    COMPLETED = "completed", "Completed"
    PARTIALLY_COMPLETED = "partially_completed", "Partially completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class Request(models.Model):
    """What an astronomer (or a strategy, for an alert) asks the observatory to do."""

    Status = RequestStatus

    name = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="requests")
    program = models.ForeignKey("pyrosapp.ScientificProgram", on_delete=models.PROTECT, related_name="requests")
    status = models.CharField(max_length=20, choices=RequestStatus.choices, default=RequestStatus.DRAFT)
    status_reason = models.CharField(max_length=500, blank=True)
    is_alert = models.BooleanField(default=False)
    alert_event = models.ForeignKey("pyrosapp.AlertEvent", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="requests")
    estimated_duration_s = models.FloatField(default=0.0)
    reserved_s = models.FloatField(default=0.0, help_text="Time reserved on the program's allocation.")
    # The allocation charged at submission, so a cancel or an expiry refunds the same one.
    allocation = models.ForeignKey("pyrosapp.Allocation", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="requests")
    used_s = models.FloatField(default=0.0)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["owner", "-created"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=RequestStatus.values), name="request_status_valid"),
            models.CheckConstraint(condition=models.Q(estimated_duration_s__gte=0, used_s__gte=0, reserved_s__gte=0),
                                   name="request_durations_nonneg"),
        ]

    def __str__(self) -> str:
        return self.name


class SequenceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PENDING = "pending", "Pending"          # submitted, waiting for the scheduler
    PLANNED = "planned", "Planned"          # in the current schedule
    UNPLANNED = "unplanned", "Not planned"  # schedulable but not in tonight's plan (reason kept)
    EXECUTING = "executing", "Executing"
    COMPLETED = "completed", "Completed"
    PARTIALLY_COMPLETED = "partially_completed", "Partially completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class Sequence(models.Model):
    """One target observed in one block, inside a validity window."""

    Status = SequenceStatus

    request = models.ForeignKey(Request, on_delete=models.CASCADE, related_name="sequences")
    order = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=200)
    target_name = models.CharField(max_length=200)
    ra_deg = models.FloatField(help_text="J2000")
    dec_deg = models.FloatField(help_text="J2000")
    window_start = models.DateTimeField(help_text="Validity window start (jd1)")
    window_end = models.DateTimeField(help_text="Validity window end (jd2)")
    preferred_start = models.DateTimeField(null=True, blank=True)
    tolerance_early_s = models.FloatField(default=0.0, help_text="deltaTL: how much earlier than preferred it may start")
    tolerance_late_s = models.FloatField(default=0.0, help_text="deltaTR: how much later than preferred it may start")
    priority = models.PositiveSmallIntegerField(default=5, help_text="1..10, 10 = most important")
    min_altitude_deg = models.FloatField(null=True, blank=True)
    max_airmass = models.FloatField(null=True, blank=True)
    min_moon_separation_deg = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=SequenceStatus.choices, default=SequenceStatus.DRAFT)
    status_reason = models.CharField(max_length=500, blank=True)
    estimated_duration_s = models.FloatField(default=0.0)
    used_s = models.FloatField(default=0.0)
    planned_start = models.DateTimeField(null=True, blank=True)
    planned_end = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Which execution attempt owns the sequence (a dead worker's claim is detected by its heartbeat).
    execution_token = models.CharField(max_length=64, blank=True)
    execution_heartbeat = models.DateTimeField(null=True, blank=True)
    # Executions ended by a transient device error and planned again (one retry; see majordome.night).
    device_retries = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["request", "order", "id"]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["window_end"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(ra_deg__gte=0, ra_deg__lt=360), name="sequence_ra_range"),
            models.CheckConstraint(condition=models.Q(dec_deg__gte=-90, dec_deg__lte=90), name="sequence_dec_range"),
            models.CheckConstraint(condition=models.Q(window_end__gt=models.F("window_start")),
                                   name="sequence_window_ordered"),
            models.CheckConstraint(condition=models.Q(priority__gte=1, priority__lte=10), name="sequence_priority_1_10"),
            models.CheckConstraint(condition=models.Q(min_altitude_deg__isnull=True)
                                   | models.Q(min_altitude_deg__gte=0, min_altitude_deg__lte=90),
                                   name="sequence_min_alt_range"),
            models.CheckConstraint(condition=models.Q(max_airmass__isnull=True) | models.Q(max_airmass__gte=1),
                                   name="sequence_airmass_ge_1"),
            models.CheckConstraint(condition=models.Q(min_moon_separation_deg__isnull=True)
                                   | models.Q(min_moon_separation_deg__gte=0, min_moon_separation_deg__lte=180),
                                   name="sequence_moon_sep_range"),
            models.CheckConstraint(condition=models.Q(tolerance_early_s__gte=0, tolerance_late_s__gte=0),
                                   name="sequence_tolerances_nonneg"),
            models.CheckConstraint(condition=models.Q(status__in=SequenceStatus.values), name="sequence_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.target_name})"


class Album(models.Model):
    """The part of a sequence taken with one detector."""

    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="albums")
    detector = models.ForeignKey("pyrosapp.Detector", on_delete=models.PROTECT, related_name="albums")
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sequence", "order", "id"]

    def __str__(self) -> str:
        return f"{self.sequence.name} / {self.detector.name}"


class PlanStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Plan(models.Model):
    """A series of identical exposures: filter, exposure time, number of images, binning."""

    Status = PlanStatus

    album = models.ForeignKey(Album, on_delete=models.CASCADE, related_name="plans")
    order = models.PositiveSmallIntegerField(default=0)
    filter = models.ForeignKey("pyrosapp.Filter", on_delete=models.PROTECT, related_name="plans")
    exposure_s = models.FloatField()
    count = models.PositiveIntegerField()
    binning = models.PositiveSmallIntegerField(default=1)
    frame_type = models.CharField(max_length=10, default="light",
                                  choices=[("light", "Light"), ("bias", "Bias"), ("dark", "Dark"), ("flat", "Flat")])
    status = models.CharField(max_length=20, choices=PlanStatus.choices, default=PlanStatus.PENDING)
    images_done = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["album", "order", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(exposure_s__gt=0) | models.Q(frame_type="bias", exposure_s__gte=0),
                                   name="plan_exposure_positive"),
            models.CheckConstraint(condition=models.Q(count__gte=1), name="plan_count_at_least_1"),
            models.CheckConstraint(condition=models.Q(binning__gte=1, binning__lte=8), name="plan_binning_1_8"),
            models.CheckConstraint(condition=models.Q(images_done__lte=models.F("count")), name="plan_done_le_count"),
            models.CheckConstraint(condition=models.Q(status__in=PlanStatus.values), name="plan_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.count} x {self.exposure_s:g} s {self.filter}"
