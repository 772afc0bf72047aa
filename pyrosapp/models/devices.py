"""Which backend drives each device kind, chosen in the backoffice.

The environment (``PYROS_DEVICE_BACKEND``, ``PYROS_<KIND>_BACKEND``, ``PYROS_ALPACA_*``, ``PYROS_INDI_<KIND>``,
read by :mod:`devices.observatory` and :mod:`devices.alpaca.connection`) gives the defaults; a
:class:`DeviceConfiguration` row overrides them for its kind, field by field (an empty field keeps the
setting). :func:`effective_device_configuration` merges the two; the processes that hold a device
connection (majordome.device_link) read it again every few seconds and reconnect when it changed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

if TYPE_CHECKING:
    from devices.alpaca.connection import AlpacaSettings

# the device kinds of devices.observatory.KINDS, and the Alpaca SafetyMonitor read beside the weather station
KIND_CHOICES = [
    ("mount", "Mount"),
    ("dome", "Dome"),
    ("filter_wheel", "Filter wheel"),
    ("camera", "Camera"),
    ("weather", "Weather station"),
    ("focuser", "Focuser"),
    ("watchdog", "Watchdog"),
    ("safety_monitor", "Safety monitor (Alpaca, read with the weather station)"),
]
BACKEND_CHOICES = [("indi", "INDI"), ("alpaca", "ASCOM Alpaca"), ("none", "None (the observatory has no such device)")]


class DeviceConfiguration(models.Model):
    kind = models.CharField(max_length=20, choices=KIND_CHOICES, unique=True)
    backend = models.CharField(max_length=10, choices=BACKEND_CHOICES, default="indi")
    indi_device = models.CharField(
        max_length=100, blank=True,
        help_text="INDI device name (INDI only). Empty: PYROS_INDI_<KIND>, else found by its properties.")
    alpaca_host = models.CharField(max_length=255, blank=True,
                                   help_text="Alpaca server (Alpaca only). Empty: PYROS_ALPACA_HOST.")
    alpaca_port = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Empty: PYROS_ALPACA_PORT.")
    alpaca_number = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="Alpaca device number on that server; it must exist (checked when saved). "
                  "Empty: PYROS_ALPACA_<KIND>, else 0.")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind"]
        verbose_name = "device backend"
        constraints = [
            models.CheckConstraint(condition=models.Q(backend__in=["indi", "alpaca", "none"]),
                                   name="device_configuration_backend"),
            models.CheckConstraint(condition=~models.Q(kind="watchdog", backend="alpaca"),
                                   name="device_configuration_no_alpaca_watchdog"),
            models.CheckConstraint(condition=~models.Q(kind="safety_monitor", backend="indi"),
                                   name="device_configuration_no_indi_safety_monitor"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.get_backend_display()}"

    def clean(self) -> None:
        if self.kind == "watchdog" and self.backend == "alpaca":
            raise ValidationError({"backend": "ASCOM Alpaca has no watchdog device: choose INDI or None."})
        if self.kind == "safety_monitor" and self.backend == "indi":
            raise ValidationError({"backend": "The safety monitor is an Alpaca device (INDI weather stations give "
                                              "their own verdict): choose ASCOM Alpaca or None."})
        if self.alpaca_host and any(c.isspace() or c in "/:" for c in self.alpaca_host.strip()):
            raise ValidationError({"alpaca_host": "A host name or IP address only (the port has its own field)."})

    def alpaca_address(self, settings: AlpacaSettings):
        """The Alpaca address this row selects, the settings filling its empty fields."""
        from devices.alpaca.connection import AlpacaAddress

        default = settings.address(self.kind)
        return AlpacaAddress(
            self.alpaca_host.strip() or (default.host if default else settings.host),
            self.alpaca_port or (default.port if default else settings.port),
            self.alpaca_number if self.alpaca_number is not None else (default.number if default else 0),
        )


@dataclass
class EffectiveDevices:
    """What a device connection uses: ``backends`` (kind -> indi/alpaca/none), ``alpaca`` (Alpaca
    addresses and options), ``indi_names`` (kind -> INDI device name given), ``from_backoffice`` (the
    kinds a backoffice row decides) and ``signature`` (equal for equal configurations)."""

    backends: dict[str, str]
    alpaca: AlpacaSettings
    indi_names: dict[str, str] = field(default_factory=dict)
    from_backoffice: tuple[str, ...] = ()

    @property
    def signature(self) -> tuple:
        alpaca = self.alpaca
        return (tuple(sorted(self.backends.items())), tuple(sorted(self.indi_names.items())),
                tuple(sorted((k, str(v)) for k, v in alpaca.devices.items())), alpaca.host, alpaca.port,
                alpaca.imagebytes)


def effective_device_configuration(rows: list[DeviceConfiguration] | None = None,
                                   env: Mapping[str, str] | None = None) -> EffectiveDevices:
    """The settings (environment) overridden by the backoffice's rows (all of them unless given)."""
    from devices.alpaca.connection import AlpacaSettings
    from devices.observatory import KINDS, backend_choice

    env = os.environ if env is None else env
    backends = backend_choice(env)
    alpaca = AlpacaSettings.from_env(env)
    names = {kind: env[f"PYROS_INDI_{kind.upper()}"] for kind in KINDS if env.get(f"PYROS_INDI_{kind.upper()}")}
    rows = list(DeviceConfiguration.objects.all()) if rows is None else rows
    base = AlpacaSettings.from_env(env)
    for row in rows:
        if row.kind == "safety_monitor":
            alpaca.devices["safety_monitor"] = row.alpaca_address(base) if row.backend == "alpaca" else None
            continue
        backends[row.kind] = row.backend
        if row.indi_device.strip():
            names[row.kind] = row.indi_device.strip()
        if row.backend == "alpaca":
            alpaca.devices[row.kind] = row.alpaca_address(base)
    return EffectiveDevices(backends=backends, alpaca=alpaca, indi_names=names,
                            from_backoffice=tuple(row.kind for row in rows))
