"""DRF throttles whose rates come from the settings (a module of its own: rest_framework.views imports
the throttle classes named in the settings when it is first imported)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class _SettingsRateMixin:
    """DRF reads its rates once, at import; these read ``PYROS_API_THROTTLE_RATES`` each time, so the
    settings (and tests) decide."""

    def get_rate(self):
        return settings.PYROS_API_THROTTLE_RATES.get(self.scope)


class UserThrottle(_SettingsRateMixin, UserRateThrottle):
    """Per account (token or session)."""


class AnonThrottle(_SettingsRateMixin, AnonRateThrottle):
    """Per address, before authentication."""
