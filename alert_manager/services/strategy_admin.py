"""Strategies, as operators switch them on and off."""

from __future__ import annotations

import logging

from django.db import transaction

from pyrosapp.models import Strategy

log = logging.getLogger("pyros.alert_manager")

# --- Strategies (operators) ------------------------------------------------------------------


def strategy_activate(*, strategy: Strategy, active: bool = True) -> Strategy:
    """Switch a strategy on or off. Switching one on switches off the active ones for the same alert
    types (same missions and notice types): one active strategy per alert type."""
    with transaction.atomic():
        if active:
            for other in Strategy.objects.select_for_update().filter(is_active=True).exclude(pk=strategy.pk):
                if sorted(other.missions) == sorted(strategy.missions) and \
                        sorted(other.notice_types) == sorted(strategy.notice_types):
                    Strategy.objects.filter(pk=other.pk).update(is_active=False)
        Strategy.objects.filter(pk=strategy.pk).update(is_active=active)
    strategy.refresh_from_db()
    log.info("strategy %r %s", strategy.name, "activated" if active else "deactivated")
    return strategy
