"""The development e-mail backend: each message is written whole to a file under ``var/mail/`` and shown on the
console with its secrets redacted (issue #16: a password-reset link must never appear in a log, and the
console of ``make run`` is one: supervisord keeps it in ``var/log/``)."""

from __future__ import annotations

import sys

from django.core.mail.backends import filebased

from common.logging import redact_secrets


class ConsoleEmailBackend(filebased.EmailBackend):
    def write_message(self, message) -> None:  # noqa: ANN001 - Django's EmailMessage
        super().write_message(message)
        body = redact_secrets(str(getattr(message, "body", "")))
        sys.stdout.write(f"--- e-mail to {', '.join(message.to)}: {message.subject}\n{body}\n"
                         f"--- (the whole message, links included, is in {self._fname})\n")
        sys.stdout.flush()
