"""Backoffice of common: the log."""

from __future__ import annotations

from django.contrib import admin

from pyrosapp import models as m


@admin.register(m.Log)
class LogAdmin(admin.ModelAdmin):
    list_display = ["time", "level_name", "component", "message", "process"]
    list_filter = ["level_name", "component"]
    search_fields = ["message", "component"]
    date_hierarchy = "time"
