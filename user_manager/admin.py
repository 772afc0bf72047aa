"""Backoffice of user_manager: accounts (validation and refusal go through user_manager.services), periods, programs and allocations; the backoffice is for administrators only."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.template.response import TemplateResponse

from pyrosapp import models as m
from user_manager import selectors
from user_manager.forms import AccountValidationForm
from user_manager.roles import has_role
from user_manager.services import user_refuse, user_validate


@admin.register(m.User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "institute", "role", "account_state", "is_staff", "date_joined"]
    list_filter = ["account_state", "role", "is_staff", "is_active"]
    search_fields = ["email", "first_name", "last_name", "institute"]
    readonly_fields = ["date_joined", "last_login", "state_changed_at"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Person", {"fields": ("first_name", "last_name", "institute")}),
        ("Access", {"fields": ("role", "account_state", "state_changed_at", "is_active", "is_staff", "is_superuser",
                               "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2", "role",
                                                                "account_state")}),)
    actions = ["validate_accounts", "refuse_accounts"]

    @admin.action(description="Validate the selected accounts (they can log in)")
    def validate_accounts(self, request, queryset):
        """Asks first for a program and time, so that a validated astronomer can submit at once."""
        form = AccountValidationForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            program, hours = form.cleaned_data["program"], form.cleaned_data["hours"] or 0.0
            n = user_validate(users=queryset, by=request.user, program=program, starter_hours=hours)
            given = (f"members of {program.name}" if program is not None
                     else f"each with a starter program of {hours:g} h" if hours else "without a program")
            self.message_user(request, f"{n} account(s) validated, {given}.", messages.SUCCESS)
            return None
        return TemplateResponse(request, "admin/user_manager/validate_accounts.html", {
            **self.admin_site.each_context(request), "title": "Validate accounts", "form": form,
            "accounts": queryset, "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        })

    @admin.action(description="Refuse the selected accounts")
    def refuse_accounts(self, request, queryset):
        n = user_refuse(users=queryset, by=request.user)
        self.message_user(request, f"{n} account(s) refused.", messages.WARNING)


@admin.register(m.Period)
class PeriodAdmin(admin.ModelAdmin):
    list_display = ["name", "start", "end"]
    search_fields = ["name"]


class AllocationInline(admin.TabularInline):
    model = m.Allocation
    extra = 0
    # Used and reserved time move only with requests (routine_manager.services): read-only here.
    readonly_fields = ["reserved_s", "used_s"]


@admin.register(m.ScientificProgram)
class ScientificProgramAdmin(admin.ModelAdmin):
    list_display = ["name", "pi", "priority", "is_alert_program", "is_active", "created"]
    list_filter = ["is_active", "is_alert_program", "priority"]
    search_fields = ["name", "pi__email", "description"]
    filter_horizontal = ["members"]
    inlines = [AllocationInline]


@admin.register(m.Allocation)
class AllocationAdmin(admin.ModelAdmin):
    list_display = ["program", "period", "allocated_s", "reserved_s", "used_s"]
    readonly_fields = ["reserved_s", "used_s"]
    list_filter = ["period"]
    search_fields = ["program__name"]


def _administrators_only(request) -> bool:
    # The backoffice is for administrators (role), not for every account flagged staff.
    return has_role(request.user, "administrator") and request.user.is_staff


admin.site.has_permission = _administrators_only


_admin_index = admin.site.index


def _index_with_pending_accounts(request, extra_context=None):
    """The backoffice's home starts with the accounts waiting for validation."""
    context = {"pending_accounts": list(selectors.accounts_pending()[:50])}
    context.update(extra_context or {})
    return _admin_index(request, context)


admin.site.index = _index_with_pending_accounts
