"""Account writes: registration and validation by an administrator."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.mail import mail_admins, send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from common import notifications
from pyrosapp.models import User

log = logging.getLogger("pyros.user_manager")


@transaction.atomic
def user_register(*, email: str, password: str, first_name: str = "", last_name: str = "", institute: str = "") -> User:
    """Create an astronomer account, pending until an administrator validates it."""
    user = User.objects.create_user(
        email=email, password=password, first_name=first_name, last_name=last_name, institute=institute,
        role=User.Role.ASTRONOMER, account_state=User.AccountState.PENDING,
    )
    log.info("account %s registered, pending validation", user.email)
    transaction.on_commit(lambda: mail_admins(
        "PyROS: account awaiting validation",
        f"{user.get_full_name() or user.email} <{user.email}> ({user.institute}) registered and awaits validation.",
        fail_silently=True,
    ))
    notifications.notify("account_waiting", subject="an account awaits validation",
                         body=f"{user.get_full_name() or 'Someone'} ({user.institute or 'no institute'}) registered "
                              "and awaits validation in the backoffice.",
                         link=reverse("admin:pyrosapp_user_changelist") + "?account_state__exact=pending")
    return user


def _set_state(users, state: str, by: User | None) -> int:
    changed = 0
    for user in users:
        if user.account_state == state:
            continue
        User.objects.filter(pk=user.pk).update(account_state=state, state_changed_at=timezone.now())
        changed += 1
        log.info("account %s %s by %s", user.email, state, by.email if by else "system")
        verdict = "validated: you can now log in" if state == User.AccountState.VALIDATED else "refused"
        send_mail("PyROS: your account", f"Your PyROS account {user.email} was {verdict}.", None, [user.email],
                  fail_silently=True)
    return changed


def user_validate(*, users, by: User | None = None, program=None, starter_hours: float = 0.0,
                  now=None) -> int:
    """Validate accounts and, so that a newcomer can submit at once (issue #16), give them a program:
    ``program`` (they become members; it gets a current allocation of ``starter_hours`` if it has none), or,
    with ``starter_hours`` and no program, a starter program of their own with that much time in the current
    period (a period of six months from now is created when none covers today)."""
    users = list(users)
    with transaction.atomic():
        changed = _set_state(users, User.AccountState.VALIDATED, by)
        if program is not None or starter_hours > 0:
            for user in users:
                program_give(user=user, program=program, hours=starter_hours, now=now)
    return changed


def _current_period(now):
    from pyrosapp.models import Period

    period = Period.objects.filter(start__lte=now, end__gt=now).order_by("-start").first()
    if period is None:
        period = Period.objects.create(name=f"from {now:%Y-%m-%d}", start=now, end=now + timedelta(days=182))
        log.info("period %s created for a starter allocation", period.name)
    return period


def program_give(*, user: User, program=None, hours: float = 0.0, now=None):
    """Make ``user`` a member of ``program`` (or of a starter program of their own) with time to spend now."""
    from pyrosapp.models import Allocation, ScientificProgram

    now = now or timezone.now()
    if program is None:
        name = f"Starter: {user.get_full_name() or user.email}"[:100]
        program, _ = ScientificProgram.objects.get_or_create(
            name=name, defaults={"pi": user, "description": "Created when the account was validated."})
    program.members.add(user)
    period = _current_period(now)
    if hours > 0 and not Allocation.objects.filter(program=program, period=period).exists():
        Allocation.objects.create(program=program, period=period, allocated_s=hours * 3600.0)
    log.info("account %s given program %s (%s h in %s)", user.email, program.name, hours, period.name)
    return program


def user_refuse(*, users, by: User | None = None) -> int:
    return _set_state(users, User.AccountState.REFUSED, by)


@transaction.atomic
def api_token_create(*, user: User) -> str:
    """A new API token for the user (the old one, if any, stops working). The key is returned to be shown
    once; the log says that a token was made, never the key."""
    from rest_framework.authtoken.models import Token

    Token.objects.filter(user=user).delete()
    token = Token.objects.create(user=user)
    log.info("API token created for %s", user.email)
    return token.key


def api_token_revoke(*, user: User) -> bool:
    from rest_framework.authtoken.models import Token

    deleted, _ = Token.objects.filter(user=user).delete()
    if deleted:
        log.info("API token revoked for %s", user.email)
    return bool(deleted)


def notification_preference_save(*, user: User, values: dict) -> None:
    """Store the user's notification preferences (a row of their own, created on the first save)."""
    from pyrosapp.models import NotificationPreference

    NotificationPreference.objects.update_or_create(user=user, defaults=values)
    log.info("notification preferences of %s saved", user.email)
