from __future__ import annotations

from django import forms
from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.forms import AuthenticationForm

from pyrosapp.models import NotificationPreference, ScientificProgram, User


class EmailAuthenticationForm(AuthenticationForm):
    """Login by e-mail, telling pending and refused accounts why they cannot log in."""

    username = forms.EmailField(label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Wrong e-mail or password.",
        "pending": "Your account is awaiting validation by an administrator. You will receive an e-mail when it is validated.",
        "refused": "Your account request was refused. Contact the observatory if you think this is a mistake.",
    }

    def clean(self):
        email = (self.cleaned_data.get("username") or "").lower()
        password = self.cleaned_data.get("password")
        if email and password:
            self.user_cache = authenticate(self.request, username=email, password=password)
            if self.user_cache is None:
                user = User.objects.filter(email=email).first()
                # While locked out (django-axes) the password is not checked at all: telling a pending
                # account's right password from a wrong one would still let a guesser go on.
                locked_out = getattr(self.request, "axes_locked_out", False)
                if user is not None and not locked_out and user.check_password(password):
                    if user.account_state == User.AccountState.PENDING:
                        raise forms.ValidationError(self.error_messages["pending"], code="pending")
                    if user.account_state == User.AccountState.REFUSED:
                        raise forms.ValidationError(self.error_messages["refused"], code="refused")
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class RegistrationForm(forms.ModelForm):
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                                help_text=password_validation.password_validators_help_text_html())
    password2 = forms.CharField(label="Password again", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    class Meta:
        model = User
        fields = ["email", "first_name", "last_name", "institute"]

    def clean_email(self):
        email = self.cleaned_data["email"].lower()
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError("An account with this e-mail already exists.")
        return email

    def clean(self):
        cleaned = super().clean()
        p1, p2 = cleaned.get("password1"), cleaned.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            candidate = User(email=cleaned.get("email") or "", first_name=cleaned.get("first_name") or "",
                             last_name=cleaned.get("last_name") or "")
            try:
                password_validation.validate_password(p1, candidate)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["first_name", "last_name", "institute"]


class NotificationPreferenceForm(forms.ModelForm):
    """What the user wants to be told (the roles decide what may be offered: alarms to operators and
    administrators, accounts waiting to administrators)."""

    webhook_url = forms.URLField(required=False, assume_scheme="https", label="Webhook URL",
                                 help_text=NotificationPreference._meta.get_field("webhook_url").help_text)

    class Meta:
        model = NotificationPreference
        fields = ["by_email", "webhook_url", "request_scheduled", "request_executed", "request_failed",
                  "images_analysed", "grb_triggered", "observatory_alarm", "account_waiting"]

    def __init__(self, *args, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if user.role == User.Role.ASTRONOMER:
            del self.fields["observatory_alarm"]
        if user.role != User.Role.ADMINISTRATOR:
            del self.fields["account_waiting"]


class AccountValidationForm(forms.Form):
    """Asked by the backoffice's "Validate" action: what the validated accounts may observe with."""

    program = forms.ModelChoiceField(
        queryset=ScientificProgram.objects.none(), required=False,
        empty_label="A starter program of their own",
        help_text="They become members of this program; left empty, each gets a program of their own.")
    hours = forms.FloatField(
        min_value=0, max_value=1000, initial=2.0, label="Hours in the current period",
        help_text="Allocated to the starter program (or to the chosen program if it has no allocation now). "
                  "0: no time, they cannot submit yet.")

    def __init__(self, *args, **kwargs) -> None:
        from user_manager.selectors import programs_to_join

        super().__init__(*args, **kwargs)
        self.fields["program"].queryset = programs_to_join()
