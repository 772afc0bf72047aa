"""Issue #16: astronomers read only the log lines about their own requests and the observatory's public state,
cut to their first line, without file paths or other people's e-mail addresses; operators read everything;
a password-reset link never appears in a log (Log table, console, gunicorn's access log)."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core import mail
from django.urls import reverse

from common.logging import RedactSecretsFilter, redact_secrets
from pyrosapp.models import Log, User
from pyrosapp.tests.factories import RequestFactory, UserFactory

pytestmark = pytest.mark.django_db
log = logging.getLogger("pyros.routine_manager")


def _messages(client) -> list[str]:
    return [row["message"] for row in client.get("/api/logs/?limit=500").json()["results"]]


def test_astronomers_read_their_own_lines_and_the_public_ones(client):
    ada, bob = UserFactory(email="ada@example.org"), UserFactory(email="bob@example.org")
    mine, theirs = RequestFactory(owner=ada), RequestFactory(owner=bob)
    log.info("request %s submitted", mine.pk, extra={"request_id": mine.pk})
    try:
        raise OSError("disk full")
    except OSError:
        log.exception("request %s: image /work/main/var/data/2026/x.fits not written for ada@example.org "
                      "(operator bob@example.org told)", mine.pk, extra={"request_id": mine.pk})
    log.info("request %s of bob@example.org submitted", theirs.pk, extra={"request_id": theirs.pk})
    logging.getLogger("pyros.majordome").info("observatory safety=unsafe: rain", extra={"public": True})
    logging.getLogger("pyros.user_manager").info("account carol@example.org registered, pending validation")

    client.force_login(ada)
    seen = _messages(client)
    assert f"request {mine.pk} submitted" in seen and "observatory safety=unsafe: rain" in seen
    (failure,) = [m for m in seen if "not written" in m]
    assert failure == f"request {mine.pk}: image … not written for ada@example.org (operator …@… told)"
    assert not any("Traceback" in m or "bob@example.org" in m or "carol" in m for m in seen)
    assert all(f"request {theirs.pk} " not in m for m in seen)

    client.force_login(UserFactory(email="op@example.org", role=User.Role.OPERATOR))
    everything = "\n".join(_messages(client))
    assert "Traceback" in everything and "/work/main/var/data/2026/x.fits" in everything
    assert "carol@example.org registered" in everything and f"request {theirs.pk} of bob@example.org" in everything


def test_a_password_reset_link_is_in_no_log(client, settings, tmp_path, capsys):
    settings.EMAIL_BACKEND = "common.mail.ConsoleEmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    UserFactory(email="ada@example.org")
    client.post(reverse("user_manager:password_reset"), {"email": "ada@example.org"})
    (written,) = list(Path(tmp_path).iterdir())
    link = re.search(r"/accounts/password/reset/[^/\s]+/[^/\s]+/", written.read_text()).group(0)
    console = capsys.readouterr().out
    assert "e-mail to ada@example.org" in console and "/accounts/password/reset/…/…/" in console
    assert link not in console
    client.get(link)  # following the link (Django then redirects to a URL without the token)
    logging.getLogger("pyros.user_manager").warning("odd visit of %s", link)
    assert not Log.objects.filter(message__contains=link.split("/")[-2]).exists()
    assert Log.objects.filter(message__contains="odd visit of /accounts/password/reset/…/…/").exists()

    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", (link,), None)
    assert RedactSecretsFilter().filter(record) and link not in record.getMessage()

    from gunicorn.config import Config

    from common.gunicorn_log import RedactingLogger

    environ = {"REQUEST_METHOD": "GET", "RAW_URI": link, "PATH_INFO": link, "SERVER_PROTOCOL": "HTTP/1.1",
               "QUERY_STRING": "", "HTTP_REFERER": "http://127.0.0.1:8000" + link}
    response = SimpleNamespace(status="200 OK", sent=10, headers=[])
    atoms = RedactingLogger(Config()).atoms(response, SimpleNamespace(headers=[("Referer", environ["HTTP_REFERER"])]),
                                            environ, timedelta(milliseconds=5))
    assert all(link not in str(value) for value in atoms.values())
    assert atoms["r"] == "GET /accounts/password/reset/…/…/ HTTP/1.1"
    assert redact_secrets("see /accounts/password/reset/done/") == "see /accounts/password/reset/done/"
    assert mail.outbox == []  # delivered by the console backend, not the test outbox
