from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator

from user_manager import selectors, services
from user_manager.forms import EmailAuthenticationForm, ProfileForm, RegistrationForm


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
    if request.method == "POST" and form.is_valid():
        services.user_register(
            email=form.cleaned_data["email"], password=form.cleaned_data["password1"],
            first_name=form.cleaned_data["first_name"], last_name=form.cleaned_data["last_name"],
            institute=form.cleaned_data["institute"],
        )
        return render(request, "user_manager/registered.html", {"email": form.cleaned_data["email"]})
    return render(request, "user_manager/register.html", {"form": form})


def profile(request):
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Your profile was saved.")
        return redirect("user_manager:profile")
    return render(request, "user_manager/profile.html", {
        "form": form, "programs": selectors.programs_of_user(user=request.user),
    })


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
