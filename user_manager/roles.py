"""Role checks, in one place, for views (decorator, mixin) and the API (permission classes)."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

ASTRONOMER = "astronomer"
OPERATOR = "operator"
ADMINISTRATOR = "administrator"

# An administrator may do everything an operator may.
_IMPLIED = {ADMINISTRATOR: {ADMINISTRATOR, OPERATOR, ASTRONOMER}, OPERATOR: {OPERATOR, ASTRONOMER},
            ASTRONOMER: {ASTRONOMER}}


def has_role(user, *roles: str) -> bool:
    """True when the user is logged in, validated, and holds one of `roles` (or a role implying it)."""
    if not getattr(user, "is_authenticated", False):
        return False
    if getattr(user, "account_state", None) != "validated" or not user.is_active:
        return False
    held = _IMPLIED.get(user.role, set())
    if user.is_superuser:
        held = _IMPLIED[ADMINISTRATOR]
    return any(role in held for role in roles)


def is_operator(user) -> bool:
    return has_role(user, OPERATOR)


def is_administrator(user) -> bool:
    return has_role(user, ADMINISTRATOR)


def role_required(*roles: str):
    """View decorator: 403 unless the user holds one of the roles (login is enforced by the middleware)."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not has_role(request.user, *roles):
                raise PermissionDenied("This page is for " + " or ".join(f"{r}s" for r in roles) + ".")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


class RoleRequiredMixin:
    """Class-based view mixin: set `required_roles = (OPERATOR,)`."""

    required_roles: tuple[str, ...] = ()

    def dispatch(self, request, *args, **kwargs):
        if self.required_roles and not has_role(request.user, *self.required_roles):
            raise PermissionDenied("This page is for " + " or ".join(f"{r}s" for r in self.required_roles) + ".")
        return super().dispatch(request, *args, **kwargs)


class IsOperator(BasePermission):
    message = "Only operators and administrators may do this."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, OPERATOR)


class IsAdministrator(BasePermission):
    message = "Only administrators may do this."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, ADMINISTRATOR)


class IsValidatedUser(BasePermission):
    message = "Your account is not validated."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, ASTRONOMER)
