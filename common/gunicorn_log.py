"""gunicorn's access log without secrets (Procfile: ``--logger-class common.gunicorn_log.RedactingLogger``).

The access log writes every request line; a password-reset link's token is in its URL (issue #16)."""

from __future__ import annotations

from gunicorn.glogging import Logger

from common.logging import redact_secrets


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):  # noqa: ANN001, ANN201 - gunicorn's signature
        atoms = super().atoms(resp, req, environ, request_time)
        # Every text atom: the request line, the path, the referer, and the environ copies of them.
        return {key: redact_secrets(value) if isinstance(value, str) else value for key, value in atoms.items()}
