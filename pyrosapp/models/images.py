from __future__ import annotations

from django.db import models


class FrameType(models.TextChoices):
    LIGHT = "light", "Light"
    BIAS = "bias", "Bias"
    DARK = "dark", "Dark"
    FLAT = "flat", "Flat"


class Image(models.Model):
    """One FITS file written by the observation manager."""

    FrameType = FrameType

    plan = models.ForeignKey("pyrosapp.Plan", null=True, blank=True, on_delete=models.SET_NULL, related_name="images")
    sequence = models.ForeignKey("pyrosapp.Sequence", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="images")
    detector = models.ForeignKey("pyrosapp.Detector", on_delete=models.PROTECT, related_name="images")
    index_in_plan = models.PositiveIntegerField(null=True, blank=True, help_text="1..count within its plan")
    frame_type = models.CharField(max_length=10, choices=FrameType.choices, default=FrameType.LIGHT)
    file_path = models.CharField(max_length=500, unique=True, help_text="Relative to the data directory")
    date_obs = models.DateTimeField(db_index=True)
    exposure_s = models.FloatField()
    filter_name = models.CharField(max_length=30, blank=True)
    binning = models.PositiveSmallIntegerField(default=1)
    ra_deg = models.FloatField(null=True, blank=True)
    dec_deg = models.FloatField(null=True, blank=True)
    airmass = models.FloatField(null=True, blank=True)
    header = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date_obs"]
        constraints = [
            # Recovery after a killed worker must never store the same exposure twice.
            models.UniqueConstraint(fields=["plan", "index_in_plan"], name="image_unique_index_in_plan",
                                    condition=models.Q(plan__isnull=False)),
            models.CheckConstraint(condition=models.Q(exposure_s__gte=0), name="image_exposure_nonneg"),
        ]

    def __str__(self) -> str:
        return self.file_path


class CalibrationMaster(models.Model):
    class Kind(models.TextChoices):
        BIAS = "bias", "Bias"
        DARK = "dark", "Dark"
        FLAT = "flat", "Flat"

    detector = models.ForeignKey("pyrosapp.Detector", on_delete=models.PROTECT, related_name="calibration_masters")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    filter_name = models.CharField(max_length=30, blank=True)
    binning = models.PositiveSmallIntegerField(default=1)
    file_path = models.CharField(max_length=500, unique=True)
    n_frames = models.PositiveIntegerField()
    source_images = models.ManyToManyField(Image, blank=True, related_name="used_in_masters")
    provenance = models.JSONField(default=dict, blank=True)
    is_valid = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        constraints = [models.CheckConstraint(condition=models.Q(n_frames__gte=1), name="master_has_frames")]

    def __str__(self) -> str:
        return f"{self.kind} {self.filter_name} {self.detector} ({self.created:%Y-%m-%d})"


class AnalysisResult(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        FAILED = "failed", "Failed"
        # Valid file that is not a science frame (bias/dark/flat): it goes into the masters instead.
        SKIPPED = "skipped", "Skipped"

    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="analysis")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.CharField(max_length=500, blank=True)
    n_sources = models.PositiveIntegerField(null=True, blank=True)
    fwhm_arcsec = models.FloatField(null=True, blank=True)
    zero_point_mag = models.FloatField(null=True, blank=True)
    limiting_mag = models.FloatField(null=True, blank=True)
    wcs_offset_arcsec = models.FloatField(null=True, blank=True)
    results = models.JSONField(default=dict, blank=True)
    candidates = models.JSONField(default=list, blank=True)
    quicklook_path = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated"]
