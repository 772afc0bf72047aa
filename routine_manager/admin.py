"""Backoffice of routine_manager: requests, sequences, albums and plans.

Statuses, used and reserved time are read-only here (issue #16): they change only through the lifecycle's
services (routine_manager.services: cancel, the executor's transitions), which keep the state machine, the
allocation bookkeeping and the scheduler and majordome informed; an edit here would bypass all three."""

from __future__ import annotations

from django.contrib import admin

from pyrosapp import models as m


class SequenceInline(admin.TabularInline):
    model = m.Sequence
    extra = 0
    fields = ["name", "target_name", "ra_deg", "dec_deg", "window_start", "window_end", "priority", "status"]
    readonly_fields = ["status"]
    show_change_link = True


@admin.register(m.Request)
class RequestAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "program", "status", "is_alert", "estimated_duration_s", "used_s", "created"]
    list_filter = ["status", "is_alert", "program"]
    search_fields = ["name", "owner__email", "program__name"]
    date_hierarchy = "created"
    inlines = [SequenceInline]
    list_select_related = ["owner", "program"]
    readonly_fields = ["status", "status_reason", "estimated_duration_s", "reserved_s", "allocation", "used_s",
                       "submitted_at"]


class AlbumInline(admin.TabularInline):
    model = m.Album
    extra = 0
    show_change_link = True


@admin.register(m.Sequence)
class SequenceAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "target_name", "request", "status", "priority", "window_start", "window_end",
                    "planned_start"]
    list_filter = ["status", "priority"]
    search_fields = ["name", "target_name", "request__name"]
    inlines = [AlbumInline]
    list_select_related = ["request"]
    readonly_fields = ["status", "status_reason", "used_s", "started_at", "ended_at", "planned_start", "planned_end",
                       "execution_token", "execution_heartbeat", "device_retries"]


class PlanInline(admin.TabularInline):
    model = m.Plan
    extra = 0
    readonly_fields = ["status", "images_done"]


@admin.register(m.Album)
class AlbumAdmin(admin.ModelAdmin):
    list_display = ["id", "sequence", "detector", "order"]
    list_filter = ["detector"]
    search_fields = ["sequence__name"]
    inlines = [PlanInline]


@admin.register(m.Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["id", "album", "filter", "exposure_s", "count", "binning", "status", "images_done"]
    readonly_fields = ["status", "images_done"]
    list_filter = ["status", "filter__name", "binning"]
