from __future__ import annotations

from django.conf import settings
from django.db import models


class Period(models.Model):
    """An allocation period (semester): time is allocated to programs per period."""

    name = models.CharField(max_length=50, unique=True)
    start = models.DateTimeField()
    end = models.DateTimeField()

    class Meta:
        ordering = ["-start"]
        constraints = [models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="period_end_after_start")]

    def __str__(self) -> str:
        return self.name


class ScientificProgram(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    pi = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="programs_led")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="programs", blank=True)
    # 1..10, 10 = most important (the scheduler ranks programs by it).
    priority = models.PositiveSmallIntegerField(default=5)
    # The range of sequence priorities members may ask for in this program.
    min_sequence_priority = models.PositiveSmallIntegerField(default=1)
    max_sequence_priority = models.PositiveSmallIntegerField(default=10)
    is_alert_program = models.BooleanField(default=False, help_text="Requests built from alerts are charged here.")
    is_active = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(priority__gte=1, priority__lte=10), name="program_priority_1_10"),
            models.CheckConstraint(
                condition=models.Q(min_sequence_priority__gte=1, max_sequence_priority__lte=10,
                                   min_sequence_priority__lte=models.F("max_sequence_priority")),
                name="program_sequence_priority_range"),
        ]

    def __str__(self) -> str:
        return self.name


class Allocation(models.Model):
    """Time given to a program for one period, and how much of it was used."""

    program = models.ForeignKey(ScientificProgram, on_delete=models.CASCADE, related_name="allocations")
    period = models.ForeignKey(Period, on_delete=models.PROTECT, related_name="allocations")
    allocated_s = models.FloatField()
    used_s = models.FloatField(default=0.0)
    # Time promised to submitted requests not yet executed (released on cancel/expiry).
    reserved_s = models.FloatField(default=0.0)

    class Meta:
        ordering = ["program", "-period__start"]
        constraints = [
            models.UniqueConstraint(fields=["program", "period"], name="allocation_unique_program_period"),
            models.CheckConstraint(condition=models.Q(allocated_s__gte=0), name="allocation_allocated_nonneg"),
            models.CheckConstraint(condition=models.Q(used_s__gte=0), name="allocation_used_nonneg"),
            models.CheckConstraint(condition=models.Q(reserved_s__gte=0), name="allocation_reserved_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.program} / {self.period}"

    @property
    def remaining_s(self) -> float:
        return self.allocated_s - self.used_s - self.reserved_s
