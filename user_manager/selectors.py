from __future__ import annotations

from django.db.models import Q, QuerySet

from pyrosapp.models import ScientificProgram


def programs_of_user(*, user) -> QuerySet[ScientificProgram]:
    """Programs the user leads or belongs to, with their allocations."""
    return (ScientificProgram.objects.filter(Q(pi=user) | Q(members=user)).distinct()
            .prefetch_related("allocations__period").select_related("pi"))


def api_token_created(*, user):
    """When the user's API token was created (None: they have none). The key itself is shown only once."""
    from rest_framework.authtoken.models import Token

    return Token.objects.filter(user=user).values_list("created", flat=True).first()


def notification_preference(*, user):
    """The user's notification preferences (unsaved defaults when they never chose)."""
    from pyrosapp.models import NotificationPreference

    return NotificationPreference.objects.filter(user=user).first() or NotificationPreference(user=user)


def accounts_pending():
    """Accounts waiting for an administrator, oldest first (the backoffice's home shows them)."""
    from pyrosapp.models import User

    return User.objects.filter(account_state=User.AccountState.PENDING).order_by("date_joined")


def programs_to_join():
    """Programs a newly validated astronomer may be put in (active, not the alert program)."""
    return ScientificProgram.objects.filter(is_active=True, is_alert_program=False).order_by("name")
