"""Strategies: operators switch them on and off; administrators edit their request templates."""

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


class StrategyTemplateInvalid(ValueError):
    """The template was refused: ``errors`` are sentences, ``problems`` the equipment ones with their place."""

    def __init__(self, errors: list[str], problems: list | None = None) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.problems = problems or []


def strategy_template_save(*, strategy: Strategy, template: dict, by: str = "") -> Strategy:
    """Store ``template`` as the strategy's request template, or change nothing and raise
    :class:`StrategyTemplateInvalid`: its shape first, then what it asks of the telescope (the checks the
    backoffice and the follow-up use), so a burst never meets a template the telescope cannot do."""
    from alert_manager.strategies import template_equipment_problems, template_errors

    errors = template_errors(template)
    if errors:
        raise StrategyTemplateInvalid(errors)
    problems = template_equipment_problems(template)
    if problems:
        raise StrategyTemplateInvalid([str(p) for p in problems], problems)
    Strategy.objects.filter(pk=strategy.pk).update(template=template)
    strategy.refresh_from_db()
    log.info("strategy %r: request template changed%s (%d sequences)", strategy.name, f" by {by}" if by else "",
             len(template["sequences"]))
    return strategy
