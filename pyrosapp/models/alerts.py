from __future__ import annotations

from django.db import models


class Alert(models.Model):
    """One received VOEvent packet, kept whole (raw XML) whatever happens to it afterwards."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"      # persisted, not processed yet
        PROCESSING = "processing", "Processing"  # claimed by an alert worker (conditional update)
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"         # stored and visible, triggers nothing (test, not a GRB...)
        REJECTED = "rejected", "Rejected"      # unparsable or invalid; reason kept

    ivorn = models.CharField(max_length=500, unique=True, null=True, blank=True)
    raw_xml = models.BinaryField()
    sha256 = models.CharField(max_length=64, db_index=True)
    received_at = models.DateTimeField(db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    status_reason = models.CharField(max_length=500, blank=True)
    role = models.CharField(max_length=20, blank=True)
    stream = models.CharField(max_length=200, blank=True)
    mission = models.CharField(max_length=50, blank=True)
    instrument = models.CharField(max_length=50, blank=True)
    notice_type = models.CharField(max_length=100, blank=True)
    packet_type = models.IntegerField(null=True, blank=True)
    trigger_id = models.CharField(max_length=100, blank=True, db_index=True)
    # Namespace in which trigger_id is unique ("Swift", "Fermi-GBM", "SVOM", "LVK"): grouping key with trigger_id.
    trigger_scope = models.CharField(max_length=50, blank=True)
    event_time = models.DateTimeField(null=True, blank=True)
    ra_deg = models.FloatField(null=True, blank=True)
    dec_deg = models.FloatField(null=True, blank=True)
    error_deg = models.FloatField(null=True, blank=True)
    position_usable = models.BooleanField(default=False)
    params = models.JSONField(default=dict, blank=True)
    citations = models.JSONField(default=list, blank=True)
    flags = models.JSONField(default=list, blank=True, help_text="Triage flags read from the packet")
    decision = models.CharField(max_length=20, blank=True, help_text="trigger / update / retraction / ignored")
    repeats = models.PositiveIntegerField(default=0, help_text="Times the same IVORN arrived again")
    event = models.ForeignKey("pyrosapp.AlertEvent", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="notices")
    timings = models.JSONField(default=dict, blank=True, help_text="Latency marks of the pipeline (s)")

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["trigger_scope", "trigger_id"], name="alert_trigger_idx"),
                   models.Index(fields=["status", "received_at"], name="alert_status_received_idx")]
        constraints = [
            models.CheckConstraint(condition=models.Q(error_deg__isnull=True) | models.Q(error_deg__gte=0),
                                   name="alert_error_nonneg"),
        ]

    def __str__(self) -> str:
        return self.ivorn or f"alert {self.pk} (unparsed)"


class AlertEvent(models.Model):
    """One astrophysical burst, grouping the notices of one or several missions."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        OBSERVING = "observing", "Observing"
        AWAITING_VISIBILITY = "awaiting_visibility", "Awaiting visibility"
        NOT_ACTIONABLE = "not_actionable", "Not actionable"
        IGNORED = "ignored", "Ignored"
        RETRACTED = "retracted", "Retracted"
        COMPLETED = "completed", "Completed"

    name = models.CharField(max_length=100)
    missions = models.JSONField(default=list, blank=True)
    trigger_ids = models.JSONField(default=dict, blank=True, help_text="mission -> trigger ids")
    burst_time = models.DateTimeField(null=True, blank=True, db_index=True)
    ra_deg = models.FloatField(null=True, blank=True)
    dec_deg = models.FloatField(null=True, blank=True)
    error_deg = models.FloatField(null=True, blank=True)
    pointed_ra_deg = models.FloatField(null=True, blank=True)
    pointed_dec_deg = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.NEW)
    status_reason = models.CharField(max_length=500, blank=True)
    strategy = models.ForeignKey("pyrosapp.Strategy", null=True, blank=True, on_delete=models.SET_NULL)
    request = models.ForeignKey("pyrosapp.Request", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    is_test = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.name


class Strategy(models.Model):
    """How an alert type becomes a request (administrators define them; operators pick the active one)."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    missions = models.JSONField(default=list, blank=True, help_text='Missions it applies to, e.g. ["Swift", "SVOM"]')
    notice_types = models.JSONField(default=list, blank=True, help_text="Notice types it applies to (empty: all)")
    triggers = models.BooleanField(default=True, help_text="Whether a matching burst triggers an observation")
    max_error_deg = models.FloatField(default=0.25, help_text="Larger error regions do not point the telescope")
    min_altitude_deg = models.FloatField(default=20.0)
    # {"sequences": [{"name", "after_burst_s": [from, to], "albums": [{"detector", "plans": [{"filter", "exposure_s", "count"}]}]}]}
    template = models.JSONField(default=dict)
    is_active = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "strategies"
        constraints = [models.CheckConstraint(condition=models.Q(max_error_deg__gt=0), name="strategy_max_error_pos")]

    def __str__(self) -> str:
        return self.name
