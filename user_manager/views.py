from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST

from common.ratelimit import client_address, limit_reached
from user_manager import selectors, services
from user_manager.forms import EmailAuthenticationForm, NotificationPreferenceForm, ProfileForm, RegistrationForm

log = logging.getLogger("pyros.user_manager")


def login_email(request, credentials=None) -> str:
    """The account a login attempt is for, as django-axes counts failures (AUTHENTICATION_BACKENDS get
    ``username=<e-mail>``; the login form posts ``username``)."""
    source = credentials if credentials else getattr(request, "POST", {})
    return str(source.get("username") or "").strip().lower()


def locked_out(request, original_response=None, credentials=None):
    """django-axes' answer to a login attempt while the e-mail is locked out for this address."""
    minutes = max(1, round(float(settings.AXES_COOLOFF_TIME) * 60))
    return render(request, "user_manager/locked_out.html",
                  {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes}, status=429)


@method_decorator(login_not_required, name="dispatch")
class LoginView(auth_views.LoginView):
    template_name = "user_manager/login.html"
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True


@login_not_required
def register(request):
    if request.user.is_authenticated:
        return redirect("dashboard:home")
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and limit_reached(scope="register", key=client_address(request),
                                                  limit=settings.PYROS_REGISTRATIONS_PER_HOUR):
        return render(request, "errors/error.html", {
            "status": 429, "title": "Too many registrations",
            "message": "Too many accounts were requested from this address in the last hour: try again later."},
            status=429)
    if request.method == "POST" and form.is_valid():
        services.user_register(
            email=form.cleaned_data["email"], password=form.cleaned_data["password1"],
            first_name=form.cleaned_data["first_name"], last_name=form.cleaned_data["last_name"],
            institute=form.cleaned_data["institute"],
        )
        return render(request, "user_manager/registered.html", {"email": form.cleaned_data["email"]})
    return render(request, "user_manager/register.html", {"form": form})


def _profile_page(request, form, *, new_token: str = "", notification_form=None, status: int = 200):
    if notification_form is None:
        notification_form = NotificationPreferenceForm(
            instance=selectors.notification_preference(user=request.user), user=request.user)
    return render(request, "user_manager/profile.html", {
        "form": form, "notification_form": notification_form, "programs": selectors.programs_of_user(user=request.user),
        "token_created": selectors.api_token_created(user=request.user), "new_token": new_token,
        "api_root": request.build_absolute_uri("/api/"),
    }, status=status)


def profile(request):
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Your profile was saved.")
        return redirect("user_manager:profile")
    return _profile_page(request, form)


@require_POST
def notification_preferences(request):
    form = NotificationPreferenceForm(request.POST, instance=selectors.notification_preference(user=request.user),
                                      user=request.user)
    if not form.is_valid():
        return _profile_page(request, ProfileForm(instance=request.user), notification_form=form, status=400)
    services.notification_preference_save(user=request.user, values={
        name: form.cleaned_data[name] for name in form.fields})
    messages.success(request, "Your notification preferences were saved.")
    return redirect("user_manager:profile")


@require_POST
def api_token(request):
    """Create (show once) or revoke the user's API token."""
    if request.POST.get("action") == "revoke":
        if services.api_token_revoke(user=request.user):
            messages.success(request, "Your API token was revoked: programs using it are refused from now on.")
        return redirect("user_manager:profile")
    key = services.api_token_create(user=request.user)
    messages.success(request, "A new API token was created. Copy it now: it is shown only this once.")
    # Rendered, not redirected: the key is never put in the session, a URL or a log.
    return _profile_page(request, ProfileForm(instance=request.user), new_token=key)


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "user_manager/password_change.html"
    success_url = reverse_lazy("user_manager:profile")

    def form_valid(self, form):
        messages.success(self.request, "Your password was changed.")
        return super().form_valid(form)


@method_decorator(login_not_required, name="dispatch")
class PasswordResetView(auth_views.PasswordResetView):
    template_name = "user_manager/password_reset.html"
    email_template_name = "user_manager/password_reset_email.txt"
    subject_template_name = "user_manager/password_reset_subject.txt"
    success_url = reverse_lazy("user_manager:password_reset_done")

    def form_valid(self, form):
        # 20 reset e-mails in 0.1 s were sent (issue #16): a few per address and per client address an
        # hour, the rest silently dropped (the page is the same, so it tells nothing about accounts).
        email = form.cleaned_data["email"].strip().lower()
        limit = settings.PYROS_PASSWORD_RESET_PER_HOUR
        if (limit_reached(scope="password-reset", key=email, limit=limit)
                or limit_reached(scope="password-reset-client", key=client_address(self.request),
                                 limit=limit * 3)):
            log.warning("password reset e-mail not sent: hourly limit reached (%s)", client_address(self.request))
            return redirect(self.get_success_url())
        return super().form_valid(form)


@method_decorator(login_not_required, name="dispatch")
class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "user_manager/password_reset_done.html"


@method_decorator(login_not_required, name="dispatch")
class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "user_manager/password_reset_confirm.html"
    success_url = reverse_lazy("user_manager:password_reset_complete")


@method_decorator(login_not_required, name="dispatch")
class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "user_manager/password_reset_complete.html"
