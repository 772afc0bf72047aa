"""`manage.py create_api_token EMAIL`: print the user's REST API token (created on first use)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from pyrosapp.models import User


class Command(BaseCommand):
    help = "Print the API token of a user (create it if needed). Use it as 'Authorization: Token <key>'."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--rotate", action="store_true", help="Replace an existing token by a new one.")

    def handle(self, *args, email: str, rotate: bool, **options) -> None:
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"no user with e-mail {email!r}")
        if not user.is_validated or not user.is_active:
            raise CommandError(f"{email} is not a validated, active account: validate it first")
        if rotate:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
