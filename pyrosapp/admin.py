"""The backoffice: every table, with the columns, filters and search an administrator wants."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from pyrosapp import models as m

admin.site.site_header = "PyROS backoffice"
admin.site.site_title = "PyROS backoffice"


@admin.register(m.User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "institute", "role", "account_state", "is_staff", "date_joined"]
    list_filter = ["account_state", "role", "is_staff", "is_active"]
    search_fields = ["email", "first_name", "last_name", "institute"]
    readonly_fields = ["date_joined", "last_login", "state_changed_at"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Person", {"fields": ("first_name", "last_name", "institute")}),
        ("Access", {"fields": ("role", "account_state", "state_changed_at", "is_active", "is_staff", "is_superuser",
                               "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2", "role",
                                                                "account_state")}),)
    actions = ["validate_accounts", "refuse_accounts"]

    @admin.action(description="Validate the selected accounts (they can log in)")
    def validate_accounts(self, request, queryset):
        from user_manager.services import user_validate

        n = user_validate(users=queryset, by=request.user)
        self.message_user(request, f"{n} account(s) validated.", messages.SUCCESS)

    @admin.action(description="Refuse the selected accounts")
    def refuse_accounts(self, request, queryset):
        from user_manager.services import user_refuse

        n = user_refuse(users=queryset, by=request.user)
        self.message_user(request, f"{n} account(s) refused.", messages.WARNING)


@admin.register(m.Period)
class PeriodAdmin(admin.ModelAdmin):
    list_display = ["name", "start", "end"]
    search_fields = ["name"]


class AllocationInline(admin.TabularInline):
    model = m.Allocation
    extra = 0


@admin.register(m.ScientificProgram)
class ScientificProgramAdmin(admin.ModelAdmin):
    list_display = ["name", "pi", "priority", "is_alert_program", "is_active", "created"]
    list_filter = ["is_active", "is_alert_program", "priority"]
    search_fields = ["name", "pi__email", "description"]
    filter_horizontal = ["members"]
    inlines = [AllocationInline]


@admin.register(m.Allocation)
class AllocationAdmin(admin.ModelAdmin):
    list_display = ["program", "period", "allocated_s", "reserved_s", "used_s"]
    list_filter = ["period"]
    search_fields = ["program__name"]


class SequenceInline(admin.TabularInline):
    model = m.Sequence
    extra = 0
    fields = ["name", "target_name", "ra_deg", "dec_deg", "window_start", "window_end", "priority", "status"]
    show_change_link = True


@admin.register(m.Request)
class RequestAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "program", "status", "is_alert", "estimated_duration_s", "used_s", "created"]
    list_filter = ["status", "is_alert", "program"]
    search_fields = ["name", "owner__email", "program__name"]
    date_hierarchy = "created"
    inlines = [SequenceInline]
    list_select_related = ["owner", "program"]


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


class PlanInline(admin.TabularInline):
    model = m.Plan
    extra = 0


@admin.register(m.Album)
class AlbumAdmin(admin.ModelAdmin):
    list_display = ["id", "sequence", "detector", "order"]
    list_filter = ["detector"]
    search_fields = ["sequence__name"]
    inlines = [PlanInline]


@admin.register(m.Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["id", "album", "filter", "exposure_s", "count", "binning", "status", "images_done"]
    list_filter = ["status", "filter__name", "binning"]


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
        from alert_manager.strategies import template_errors

        template = self.cleaned_data["template"]
        errors = template_errors(template)
        if errors:
            raise forms.ValidationError(errors)
        return template


@admin.register(m.Strategy)
class StrategyAdmin(admin.ModelAdmin):
    form = StrategyForm
    list_display = ["name", "triggers", "max_error_deg", "min_altitude_deg", "is_active"]
    list_filter = ["is_active", "triggers"]
    search_fields = ["name", "description"]


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


@admin.register(m.ObservatoryState)
class ObservatoryStateAdmin(admin.ModelAdmin):
    list_display = ["site", "phase", "mode", "safety", "current_sequence", "version", "updated"]
    raw_id_fields = ["current_sequence", "preempt_sequence"]


@admin.register(m.Log)
class LogAdmin(admin.ModelAdmin):
    list_display = ["time", "level_name", "component", "message", "process"]
    list_filter = ["level_name", "component"]
    search_fields = ["message", "component"]
    date_hierarchy = "time"


def _administrators_only(request) -> bool:
    # The backoffice is for administrators (role), not for every account flagged staff.
    from user_manager.roles import has_role

    return has_role(request.user, "administrator") and request.user.is_staff


admin.site.has_permission = _administrators_only
