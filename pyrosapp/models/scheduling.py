from __future__ import annotations

from django.db import models


class Schedule(models.Model):
    """One run of the scheduler: the plan of (the rest of) a night."""

    class Status(models.TextChoices):
        CURRENT = "current", "Current"
        SUPERSEDED = "superseded", "Superseded"

    site = models.ForeignKey("pyrosapp.Site", on_delete=models.PROTECT, related_name="schedules")
    created = models.DateTimeField(auto_now_add=True)
    plan_start = models.DateTimeField()
    plan_end = models.DateTimeField()
    night_start = models.DateTimeField(null=True, blank=True)
    night_end = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CURRENT)
    trigger = models.CharField(max_length=200, blank=True, help_text="Why this run happened")
    wall_s = models.FloatField(default=0.0)
    metrics = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["site", "status", "-created"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(plan_end__gte=models.F("plan_start")), name="schedule_bounds_ordered"),
        ]

    def __str__(self) -> str:
        return f"Schedule {self.pk} ({self.plan_start:%Y-%m-%d %H:%M}–{self.plan_end:%H:%M} UTC)"


class ScheduleHasSequences(models.Model):
    """A sequence's place in a schedule (tsp/tep/slack), or why it has none."""

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        REJECTED = "rejected", "Rejected"

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="entries")
    sequence = models.ForeignKey("pyrosapp.Sequence", on_delete=models.CASCADE, related_name="schedule_entries")
    status = models.CharField(max_length=20, choices=Status.choices)
    tsp = models.DateTimeField(null=True, blank=True, help_text="Planned start")
    tep = models.DateTimeField(null=True, blank=True, help_text="Planned end")
    slack_s = models.FloatField(default=0.0)
    rejection_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["schedule", "tsp", "id"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "sequence"], name="shs_unique_sequence_per_schedule"),
            models.CheckConstraint(
                condition=(models.Q(status="planned", tsp__isnull=False, tep__gt=models.F("tsp"))
                           | models.Q(status="rejected")),
                name="shs_planned_has_ordered_times"),
        ]
