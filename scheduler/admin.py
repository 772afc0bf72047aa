"""Backoffice of scheduler: schedules and their entries."""

from __future__ import annotations

from django.contrib import admin

from pyrosapp import models as m


class ShsInline(admin.TabularInline):
    model = m.ScheduleHasSequences
    extra = 0
    raw_id_fields = ["sequence"]


@admin.register(m.Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ["id", "site", "status", "created", "plan_start", "plan_end", "trigger", "wall_s"]
    list_filter = ["status", "site"]
    date_hierarchy = "created"
    inlines = [ShsInline]


@admin.register(m.ScheduleHasSequences)
class ScheduleHasSequencesAdmin(admin.ModelAdmin):
    list_display = ["schedule", "sequence", "status", "tsp", "tep", "slack_s", "rejection_reason"]
    list_filter = ["status"]
    search_fields = ["sequence__name", "rejection_reason"]
    raw_id_fields = ["schedule", "sequence"]
