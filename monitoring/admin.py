"""Backoffice of monitoring: weather readings and device status history."""

from __future__ import annotations

from django.contrib import admin

from pyrosapp import models as m


@admin.register(m.WeatherReading)
class WeatherReadingAdmin(admin.ModelAdmin):
    list_display = ["time", "source", "wind_m_s", "gust_m_s", "humidity_pct", "rain_mm_h", "cloud_cover_pct",
                    "temperature_c", "station_safe"]
    list_filter = ["source", "station_safe"]
    date_hierarchy = "time"


@admin.register(m.DeviceStatus)
class DeviceStatusAdmin(admin.ModelAdmin):
    list_display = ["time", "device", "name", "state"]
    list_filter = ["device", "state"]
    date_hierarchy = "time"
