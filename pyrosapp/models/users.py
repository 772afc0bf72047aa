from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **fields):
        if not email:
            raise ValueError("an e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **fields):
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields):
        fields.update(is_staff=True, is_superuser=True, role=User.Role.ADMINISTRATOR,
                      account_state=User.AccountState.VALIDATED)
        return self._create(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person using PyROS. Logs in with an e-mail address; must be validated by an administrator."""

    class Role(models.TextChoices):
        ASTRONOMER = "astronomer", "Astronomer"
        OPERATOR = "operator", "Operator"
        ADMINISTRATOR = "administrator", "Administrator"

    class AccountState(models.TextChoices):
        PENDING = "pending", "Pending validation"
        VALIDATED = "validated", "Validated"
        REFUSED = "refused", "Refused"

    email = models.EmailField(unique=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    institute = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ASTRONOMER)
    account_state = models.CharField(max_length=20, choices=AccountState.choices, default=AccountState.PENDING)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log into the backoffice (administrators).")
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=["astronomer", "operator", "administrator"]),
                                   name="user_role_valid"),
            models.CheckConstraint(condition=models.Q(account_state__in=["pending", "validated", "refused"]),
                                   name="user_account_state_valid"),
        ]

    def __str__(self) -> str:
        return self.get_full_name() or self.email

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def get_short_name(self) -> str:
        return self.first_name or self.email

    @property
    def is_validated(self) -> bool:
        return self.account_state == self.AccountState.VALIDATED
