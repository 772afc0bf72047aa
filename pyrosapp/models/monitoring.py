from __future__ import annotations

from django.db import models


class WeatherReading(models.Model):
    time = models.DateTimeField(db_index=True)
    source = models.CharField(max_length=100, default="weather")
    wind_m_s = models.FloatField(null=True, blank=True)
    gust_m_s = models.FloatField(null=True, blank=True)
    humidity_pct = models.FloatField(null=True, blank=True)
    rain_mm_h = models.FloatField(null=True, blank=True)
    temperature_c = models.FloatField(null=True, blank=True)
    cloud_cover_pct = models.FloatField(null=True, blank=True)
    station_safe = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["-time"]


class DeviceStatus(models.Model):
    """A compact history of what each device reported."""

    time = models.DateTimeField(db_index=True)
    device = models.CharField(max_length=100, help_text="mount, dome, camera, filter_wheel, weather, plc")
    name = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=50, blank=True)
    values = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-time"]
        indexes = [models.Index(fields=["device", "-time"])]
        verbose_name_plural = "device statuses"


class ObservatoryState(models.Model):
    """The observatory's current state (one row per site). `version` increases on every change so
    that live clients can skip unchanged data."""

    class Phase(models.TextChoices):
        DAY = "day", "Day"
        DUSK = "dusk", "Dusk"
        NIGHT = "night", "Night"
        DAWN = "dawn", "Dawn"

    class Mode(models.TextChoices):
        AUTOMATIC = "automatic", "Automatic"
        MANUAL = "manual", "Manual"
        PAUSED = "paused", "Paused"
        STOPPED = "stopped", "Stopped"

    class Safety(models.TextChoices):
        SAFE = "safe", "Safe"
        UNSAFE = "unsafe", "Unsafe"
        UNKNOWN = "unknown", "Unknown"

    site = models.OneToOneField("pyrosapp.Site", on_delete=models.CASCADE, related_name="state")
    phase = models.CharField(max_length=10, choices=Phase.choices, default=Phase.DAY)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.AUTOMATIC)
    safety = models.CharField(max_length=10, choices=Safety.choices, default=Safety.UNKNOWN)
    safety_reasons = models.JSONField(default=list, blank=True)
    unsafe_since = models.DateTimeField(null=True, blank=True)
    conditions_ok_since = models.DateTimeField(null=True, blank=True)
    pause_requested = models.CharField(max_length=10, blank=True, help_text="'deferred' while a pause waits")
    current_sequence = models.ForeignKey("pyrosapp.Sequence", null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+")
    preempt_sequence = models.ForeignKey("pyrosapp.Sequence", null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+", help_text="Run this next, before the plan")
    # Set by whoever wants the running sequence stopped (operator, alert, safety); the executor's
    # watcher sees it within a fraction of a second and aborts the devices itself.
    abort_sequence_id = models.BigIntegerField(null=True, blank=True)
    abort_reason = models.CharField(max_length=300, blank=True)

    class StopKind(models.TextChoices):
        # What the stop means for the sequence: it is planned again (pre-emption, pause, weather,
        # operator stop/close) or it ends (an operator's abort, a cancelled request).
        INTERRUPT = "interrupt", "interrupt: the sequence goes back to pending"
        END = "end", "end: the sequence ends with what it has done"

    abort_kind = models.CharField(max_length=10, choices=StopKind.choices, blank=True)
    calibrations_done = models.JSONField(default=dict, blank=True, help_text='{"dusk": "2026-11-21", ...}')
    progress = models.JSONField(default=dict, blank=True)
    # Latest mount/dome/weather snapshot from monitoring, so status reads are one row.
    devices_snapshot = models.JSONField(default=dict, blank=True)
    version = models.PositiveBigIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.site}: {self.phase}/{self.mode}/{self.safety}"
