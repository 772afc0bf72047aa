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
