"""Backoffice of alert_manager: alerts, alert events and strategies (templates checked when saved)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from alert_manager.strategies import template_equipment_errors, template_errors
from pyrosapp import models as m


@admin.register(m.Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["id", "ivorn", "mission", "notice_type", "role", "trigger_id", "event_time", "status", "received_at"]
    list_filter = ["status", "role", "mission", "notice_type"]
    search_fields = ["ivorn", "trigger_id", "status_reason"]
    date_hierarchy = "received_at"
    raw_id_fields = ["event"]
    exclude = ["raw_xml"]
    readonly_fields = ["raw_xml_text"]

    @admin.display(description="Raw XML")
    def raw_xml_text(self, obj):
        return bytes(obj.raw_xml or b"").decode("utf-8", "replace")


class AlertInline(admin.TabularInline):
    model = m.Alert
    extra = 0
    fields = ["ivorn", "notice_type", "role", "received_at", "status"]
    readonly_fields = fields
    show_change_link = True


@admin.register(m.AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "burst_time", "status", "ra_deg", "dec_deg", "error_deg", "is_test", "created"]
    list_filter = ["status", "is_test"]
    search_fields = ["name"]
    inlines = [AlertInline]
    raw_id_fields = ["request"]


class StrategyForm(forms.ModelForm):
    class Meta:
        model = m.Strategy
        fields = "__all__"

    def clean_template(self):
        template = self.cleaned_data["template"]
        # Refused when saved, not at 3 a.m. when a burst needs it: the shape first, then the telescope's equipment.
        errors = template_errors(template) or template_equipment_errors(template)
        if errors:
            raise forms.ValidationError(errors)
        return template


@admin.register(m.Strategy)
class StrategyAdmin(admin.ModelAdmin):
    form = StrategyForm
    list_display = ["name", "triggers", "max_error_deg", "min_altitude_deg", "is_active"]
    list_filter = ["is_active", "triggers"]
    search_fields = ["name", "description"]

    # A new strategy gets its first template here (JSON, checked); an existing one's template is edited in the
    # strategy template form (rows, filters from the telescope), and shown here read-only.
    def get_exclude(self, request, obj=None):
        return ["template"] if obj is not None else []

    def get_readonly_fields(self, request, obj=None):
        return ["template_read_only"] if obj is not None else []

    @admin.display(description="Template")
    def template_read_only(self, obj):
        return format_html('<pre style="white-space: pre-wrap">{}</pre><a href="{}">Edit the template in the form</a>',
                           json.dumps(obj.template, indent=2, ensure_ascii=False),
                           reverse("alert_manager:strategy_template", args=[obj.pk]))
