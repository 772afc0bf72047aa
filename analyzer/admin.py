"""Backoffice of analyzer: images, calibration masters and analysis results."""

from __future__ import annotations

from django.contrib import admin

from pyrosapp import models as m


@admin.register(m.Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "file_path", "frame_type", "filter_name", "exposure_s", "date_obs", "detector", "sequence"]
    list_filter = ["frame_type", "filter_name", "detector"]
    search_fields = ["file_path", "sequence__name"]
    date_hierarchy = "date_obs"
    raw_id_fields = ["plan", "sequence"]


@admin.register(m.CalibrationMaster)
class CalibrationMasterAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "filter_name", "detector", "n_frames", "is_valid", "created"]
    list_filter = ["kind", "filter_name", "is_valid", "detector"]
    raw_id_fields = ["source_images"]


@admin.register(m.AnalysisResult)
class AnalysisResultAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "status", "n_sources", "fwhm_arcsec", "zero_point_mag", "limiting_mag", "updated"]
    list_filter = ["status"]
    search_fields = ["image__file_path", "failure_reason"]
    raw_id_fields = ["image"]
