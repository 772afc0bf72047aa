from __future__ import annotations

from django.db import models


class Alert(models.Model):
    """One received alert message (a VOEvent over VTP or Kafka, or a JSON notice over Kafka), kept whole
    (``raw_xml`` holds the raw bytes whatever their format) whatever happens to it afterwards."""

    class Transport(models.TextChoices):
        VTP = "vtp", "VTP (Comet)"
        KAFKA = "kafka", "Kafka"

    class Format(models.TextChoices):
        VOEVENT = "voevent", "VOEvent XML"
        JSON = "json", "JSON notice"

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
    transport = models.CharField(max_length=10, choices=Transport.choices, default=Transport.VTP)
    payload_format = models.CharField(max_length=10, choices=Format.choices, default=Format.VOEVENT)
    # Where a Kafka message came from: a redelivered message (same topic/partition/offset) is a repeat.
    kafka_topic = models.CharField(max_length=200, blank=True)
    kafka_partition = models.IntegerField(null=True, blank=True)
    kafka_offset = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["trigger_scope", "trigger_id"], name="alert_trigger_idx"),
                   models.Index(fields=["status", "received_at"], name="alert_status_received_idx")]
        constraints = [
            models.CheckConstraint(condition=models.Q(error_deg__isnull=True) | models.Q(error_deg__gte=0),
                                   name="alert_error_nonneg"),
            models.UniqueConstraint(fields=["kafka_topic", "kafka_partition", "kafka_offset"],
                                    condition=models.Q(kafka_offset__isnull=False), name="alert_kafka_position_unique"),
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
    # The tiling of a large localisation: [{"index", "ra_deg", "dec_deg", "probability", "sequence"...}] and
    # the sky map it came from (the notice's alert), re-planned when an update brings a new map.
    tiles = models.JSONField(default=list, blank=True)
    skymap_alert = models.ForeignKey("pyrosapp.Alert", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
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
    # Large localisations (an error circle wider than the camera's field, or a HEALPix sky map): observe a
    # tiling, fields ranked by enclosed probability and observability, up to a budget.
    tile_large_localisations = models.BooleanField(default=False, help_text="Tile error regions larger than the "
                                                   "field and sky maps instead of ignoring them")
    max_tiles = models.PositiveSmallIntegerField(default=10, help_text="At most this many tiles per event")
    tile_coverage = models.FloatField(default=0.9, help_text="Stop tiling once this probability is covered (0-1]")
    # {"sequences": [{"name", "after_burst_s": [from, to], "albums": [{"detector", "plans": [{"filter", "exposure_s", "count"}]}]}]}
    template = models.JSONField(default=dict)
    is_active = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "strategies"
        constraints = [models.CheckConstraint(condition=models.Q(max_error_deg__gt=0), name="strategy_max_error_pos"),
                       models.CheckConstraint(condition=models.Q(tile_coverage__gt=0, tile_coverage__lte=1),
                                              name="strategy_tile_coverage_range")]

    def __str__(self) -> str:
        return self.name


class AlertStreamHealth(models.Model):
    """The health of one alert source (GCN Kafka, a partner cluster, Comet's VTP), as its intake last saw it:
    connected, heartbeat age, per-topic last message, counts and consumer lag (``snapshot``)."""

    source = models.CharField(max_length=50, unique=True, help_text='"kafka" or "vtp"')
    configured = models.BooleanField(default=False)
    detail = models.CharField(max_length=500, blank=True, help_text="why it is not configured / the endpoint")
    connected = models.BooleanField(default=False)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    snapshot = models.JSONField(default=dict, blank=True)
    topics = models.JSONField(default=list, blank=True, help_text="Topics operators chose (empty: the default list)")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "alert stream health"

    def __str__(self) -> str:
        return self.source
