"""Backoffice of user_manager: accounts (validation and refusal go through user_manager.services), periods, programs and allocations; the backoffice is for administrators only."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from pyrosapp import models as m
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
        n = user_validate(users=queryset, by=request.user)
        self.message_user(request, f"{n} account(s) validated.", messages.SUCCESS)

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
    list_filter = ["period"]
    search_fields = ["program__name"]


def _administrators_only(request) -> bool:
    # The backoffice is for administrators (role), not for every account flagged staff.
    return has_role(request.user, "administrator") and request.user.is_staff


admin.site.has_permission = _administrators_only
