from __future__ import annotations

from django.db import models


class Site(models.Model):
    name = models.CharField(max_length=100, unique=True)
    latitude_deg = models.FloatField()
    longitude_deg = models.FloatField(help_text="East positive, -180..180")
    elevation_m = models.FloatField(default=0.0)
    # Sun altitude that starts the night (astronomical twilight by default).
    twilight_deg = models.FloatField(default=-18.0)
    horizon_min_altitude_deg = models.FloatField(default=15.0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(latitude_deg__gte=-90, latitude_deg__lte=90), name="site_lat_range"),
            models.CheckConstraint(condition=models.Q(longitude_deg__gte=-180, longitude_deg__lte=180),
                                   name="site_lon_range"),
            models.CheckConstraint(condition=models.Q(twilight_deg__gte=-18, twilight_deg__lte=0), name="site_twilight_range"),
        ]

    def __str__(self) -> str:
        return self.name


class Telescope(models.Model):
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="telescopes")
    name = models.CharField(max_length=100, unique=True)
    indi_device = models.CharField(max_length=100, default="PyROS Mount")
    aperture_m = models.FloatField(default=0.5)
    slew_rate_deg_s = models.FloatField(default=5.0)
    settle_s = models.FloatField(default=3.0)
    acquisition_s = models.FloatField(default=10.0, help_text="Time to centre the target after the slew.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(slew_rate_deg_s__gt=0), name="telescope_slew_rate_pos"),
            models.CheckConstraint(condition=models.Q(settle_s__gte=0, acquisition_s__gte=0), name="telescope_overheads_nonneg"),
        ]

    def __str__(self) -> str:
        return self.name


class Dome(models.Model):
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="domes")
    name = models.CharField(max_length=100, unique=True)
    indi_device = models.CharField(max_length=100, default="PyROS Dome")
    shutter_time_s = models.FloatField(default=20.0)

    def __str__(self) -> str:
        return self.name


class FilterWheel(models.Model):
    telescope = models.ForeignKey(Telescope, on_delete=models.PROTECT, related_name="filter_wheels")
    name = models.CharField(max_length=100, unique=True)
    indi_device = models.CharField(max_length=100, default="PyROS Filter Wheel")
    change_time_s = models.FloatField(default=2.0)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(change_time_s__gte=0), name="wheel_change_nonneg")]

    def __str__(self) -> str:
        return self.name


class Filter(models.Model):
    wheel = models.ForeignKey(FilterWheel, on_delete=models.CASCADE, related_name="filters")
    name = models.CharField(max_length=30)
    slot = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["wheel", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["wheel", "name"], name="filter_unique_name_in_wheel"),
            models.UniqueConstraint(fields=["wheel", "slot"], name="filter_unique_slot_in_wheel"),
            models.CheckConstraint(condition=models.Q(slot__gte=1), name="filter_slot_from_1"),
        ]

    def __str__(self) -> str:
        return self.name


class Detector(models.Model):
    """A camera (one channel). Albums of a sequence are taken with one detector each."""

    telescope = models.ForeignKey(Telescope, on_delete=models.PROTECT, related_name="detectors")
    filter_wheel = models.ForeignKey(FilterWheel, null=True, blank=True, on_delete=models.SET_NULL, related_name="detectors")
    name = models.CharField(max_length=100, unique=True)
    indi_device = models.CharField(max_length=100, default="PyROS Camera")
    width_px = models.PositiveIntegerField(default=1280)
    height_px = models.PositiveIntegerField(default=1024)
    pixel_scale_arcsec = models.FloatField(default=1.0)
    readout_s = models.FloatField(default=0.5)
    gain_e_per_adu = models.FloatField(default=1.5)
    read_noise_e = models.FloatField(default=8.0)
    max_binning = models.PositiveSmallIntegerField(default=4)
    # Calibration plan at dusk/dawn: {"bias": 10, "darks": [[60, 5]], "flats": {"R": 5}}.
    calibration_plan = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(pixel_scale_arcsec__gt=0), name="detector_scale_pos"),
            models.CheckConstraint(condition=models.Q(readout_s__gte=0), name="detector_readout_nonneg"),
        ]

    def __str__(self) -> str:
        return self.name
