"""Backoffice of pyrosapp: the observatory's configuration shared by every app: sites, telescopes, domes, filter wheels, filters, detectors."""

from __future__ import annotations

from django.contrib import admin

from pyrosapp import models as m

admin.site.site_header = "PyROS backoffice"
admin.site.site_title = "PyROS backoffice"


class FilterInline(admin.TabularInline):
    model = m.Filter
    extra = 0


@admin.register(m.Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["name", "latitude_deg", "longitude_deg", "elevation_m", "twilight_deg", "is_active"]
    search_fields = ["name"]


@admin.register(m.Telescope)
class TelescopeAdmin(admin.ModelAdmin):
    list_display = ["name", "site", "indi_device", "slew_rate_deg_s", "settle_s", "is_active"]
    list_filter = ["site"]


@admin.register(m.Dome)
class DomeAdmin(admin.ModelAdmin):
    list_display = ["name", "site", "indi_device", "shutter_time_s"]


@admin.register(m.FilterWheel)
class FilterWheelAdmin(admin.ModelAdmin):
    list_display = ["name", "telescope", "indi_device", "change_time_s"]
    inlines = [FilterInline]


@admin.register(m.Filter)
class FilterAdmin(admin.ModelAdmin):
    list_display = ["name", "wheel", "slot"]
    list_filter = ["wheel"]


@admin.register(m.Detector)
class DetectorAdmin(admin.ModelAdmin):
    list_display = ["name", "telescope", "indi_device", "width_px", "height_px", "pixel_scale_arcsec", "readout_s"]
    list_filter = ["telescope"]
