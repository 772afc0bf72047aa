"""Backoffice of majordome: the observatory state."""

from __future__ import annotations

from django.contrib import admin

from pyrosapp import models as m


@admin.register(m.ObservatoryState)
class ObservatoryStateAdmin(admin.ModelAdmin):
    list_display = ["site", "phase", "mode", "safety", "current_sequence", "version", "updated"]
    raw_id_fields = ["current_sequence", "preempt_sequence"]
