"""Backoffice of pyrosapp: the observatory's configuration shared by every app: sites, telescopes, domes, filter
wheels, filters, detectors, and which backend (INDI, ASCOM Alpaca) drives each device kind."""

from __future__ import annotations

import time

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from pyrosapp import models as m
from pyrosapp.models.devices import KIND_CHOICES, effective_device_configuration

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


class DeviceConfigurationForm(forms.ModelForm):
    """An Alpaca choice is saved only if its server answers and has that device (the operator picks it from the
    discovery page, or types it). The check runs from the web server's machine, as the discovery does."""

    class Meta:
        model = m.DeviceConfiguration
        fields = ["kind", "backend", "indi_device", "alpaca_host", "alpaca_port", "alpaca_number"]

    def clean(self):
        data = super().clean()
        if self.errors or data.get("backend") != "alpaca":
            return data
        from devices.alpaca.connection import AlpacaSettings
        from devices.alpaca.discovery import NoSuchAlpacaDevice, check_device

        row = m.DeviceConfiguration(**{k: data.get(k) for k in self.Meta.fields})
        row.alpaca_host = row.alpaca_host or ""
        try:
            row.clean()
        except ValidationError:
            return data  # said by the model's own check, which follows; nothing to ask the network
        try:
            address = row.alpaca_address(AlpacaSettings.from_env())
        except ValueError as exc:  # a wrong PYROS_ALPACA_* setting
            raise forms.ValidationError(f"the Alpaca settings of the environment are wrong: {exc}") from exc
        try:
            self.device_name = check_device(address.host, address.port, row.kind, address.number)
        except NoSuchAlpacaDevice as exc:
            raise forms.ValidationError(
                f"No such Alpaca device: {exc}. Pick one from 'Discover Alpaca devices', or correct the server and "
                "the number.", code="no_such_device") from exc
        self.address = address
        return data


@admin.register(m.DeviceConfiguration)
class DeviceConfigurationAdmin(admin.ModelAdmin):
    """Backend and device per kind; the settings decide the kinds without a row. The processes holding a device
    connection take a change at their next device use after a few seconds (majordome.device_link)."""

    form = DeviceConfigurationForm
    list_display = ["kind", "backend", "device", "updated"]
    change_list_template = "admin/pyrosapp/deviceconfiguration/change_list.html"

    @admin.display(description="device used")
    def device(self, row: m.DeviceConfiguration) -> str:
        effective = effective_device_configuration(rows=[row])
        if row.backend == "alpaca":
            return f"Alpaca {row.alpaca_address(effective.alpaca)}"
        if row.backend == "indi":
            return f"INDI {settings.PYROS_INDI_HOST}:{settings.PYROS_INDI_PORT} " + (
                f'"{row.indi_device}"' if row.indi_device else "(found by its properties)")
        return "-"

    def get_urls(self):
        return [path("discover/", self.admin_site.admin_view(self.discover_view),
                     name="pyrosapp_deviceconfiguration_discover"), *super().get_urls()]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        self._saved_message(request, obj, getattr(form, "device_name", None))

    def _saved_message(self, request, row: m.DeviceConfiguration, name: str | None) -> None:
        where = self.device(row) + (f" ({name})" if name else "")
        self.message_user(request, f"{row.get_kind_display()}: {row.get_backend_display()}, {where}. The processes "
                                   "holding a device connection (execution, safety, alerts, procedures) reconnect "
                                   "with it at their next device use, within a few seconds; an operation running on "
                                   "the previous connection ends with a device error and is retried.",
                          level=messages.SUCCESS)

    def discover_view(self, request):
        """Alpaca discovery on the local network (UDP broadcast and 127.0.0.1): the servers and devices that
        answered, each usable for its kind in one click (validated as a form save), and what each kind uses now."""
        from devices.alpaca.discovery import discover

        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self._use_discovered(request)
        started = time.monotonic()
        try:
            devices = discover(timeout_s=1.0, port=settings.PYROS_ALPACA_DISCOVERY_PORT)
            error = None
        except OSError as exc:
            devices, error = [], f"discovery failed: {exc}"
        effective, config_error = None, None
        try:
            effective = effective_device_configuration()
        except ValueError as exc:
            config_error = str(exc)
        return TemplateResponse(request, "admin/pyrosapp/deviceconfiguration/discover.html", {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Discover Alpaca devices",
            "devices": [{"device": d, "use_as": dict(KIND_CHOICES).get(d.kind, "").split(" (")[0].lower()}
                        for d in devices],
            "error": error,
            "seconds": time.monotonic() - started,
            "discovery_port": settings.PYROS_ALPACA_DISCOVERY_PORT,
            "current": _current_rows(effective) if effective else [],
            "config_error": config_error,
            "can_change": self.has_change_permission(request) and self.has_add_permission(request),
        })

    def _use_discovered(self, request):
        if not (self.has_change_permission(request) and self.has_add_permission(request)):
            raise PermissionDenied
        kind = request.POST.get("kind", "")
        row = m.DeviceConfiguration.objects.filter(kind=kind).first()
        data = {"kind": kind, "backend": "alpaca", "indi_device": row.indi_device if row else "",
                "alpaca_host": request.POST.get("host", ""), "alpaca_port": request.POST.get("port", ""),
                "alpaca_number": request.POST.get("number", "")}
        form = DeviceConfigurationForm(data, instance=row)
        if not form.is_valid():
            problems = "; ".join(str(e) for errors in form.errors.values() for e in errors)
            self.message_user(request, f"Nothing changed: {problems}", level=messages.ERROR)
            return redirect("admin:pyrosapp_deviceconfiguration_discover")
        saved = form.save()
        if row is None:
            self.log_addition(request, saved, [{"added": {}}])
        else:
            self.log_change(request, saved, [{"changed": {"fields": form.changed_data}}])
        self._saved_message(request, saved, form.device_name)
        return redirect("admin:pyrosapp_deviceconfiguration_changelist")


def _current_rows(effective) -> list[dict]:
    """What each device kind uses now (settings overridden by the backoffice), for the discovery page."""
    from devices.observatory import KINDS

    rows = []
    for kind in (*KINDS, "safety_monitor"):
        if kind == "safety_monitor":
            address = effective.alpaca.address(kind)
            backend = "alpaca" if address is not None else "none"
        else:
            backend = effective.backends[kind]
            address = effective.alpaca.address(kind) if backend == "alpaca" else None
        if backend == "alpaca":
            where = f"{address.host}:{address.port} #{address.number}" if address else "(none)"
        elif backend == "indi":
            where = f"{settings.PYROS_INDI_HOST}:{settings.PYROS_INDI_PORT} " + (
                f'"{effective.indi_names[kind]}"' if kind in effective.indi_names else "(found by its properties)")
        else:
            where = "-"
        rows.append({"kind": kind, "label": dict(KIND_CHOICES)[kind], "backend": backend, "where": where,
                     "source": "backoffice" if kind in effective.from_backoffice else "settings"})
    return rows
