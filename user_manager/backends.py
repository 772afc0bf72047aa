from __future__ import annotations

from django.contrib.auth.backends import ModelBackend


class ValidatedAccountBackend(ModelBackend):
    """Only accounts validated by an administrator may log in (pending and refused ones may not)."""

    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and getattr(user, "account_state", None) == "validated"
