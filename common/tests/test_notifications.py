"""Issue #16: notifications by e-mail and webhook, per user preferences, sent after commit and retried.

Delivered for real to a local SMTP server and a local HTTP receiver, both started and stopped here."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.urls import reverse

from common import messages, notifications
from common.tasks import notify as notify_task
from pyrosapp.models import NotificationPreference, User
from pyrosapp.tests.factories import RequestFactory, SequenceFactory, UserFactory
from routine_manager import lifecycle
from routine_manager.services import request_set_status

pytestmark = pytest.mark.django_db


# --- a local SMTP server (just enough of RFC 5321 for smtplib) ----------------------------------------
class _SMTPHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"220 localhost test SMTP\r\n")
        rcpt: list[str] = []
        while line := self.rfile.readline():
            command = line.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250 localhost\r\n")
            elif verb == "MAIL":
                rcpt = []
                self.wfile.write(b"250 OK\r\n")
            elif verb == "RCPT":
                rcpt.append(command.split(":", 1)[1].strip(" <>"))
                self.wfile.write(b"250 OK\r\n")
            elif verb == "DATA":
                self.wfile.write(b"354 go on\r\n")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk
                self.server.received.append((rcpt, message_from_bytes(data)))
                self.wfile.write(b"250 queued\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


@pytest.fixture
def smtp_server(settings):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.daemon_threads = True
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.server_address
    settings.EMAIL_TIMEOUT = 5
    yield server
    server.shutdown()
    server.server_close()


# --- a local webhook receiver ---------------------------------------------------------------------------
@pytest.fixture
def webhook():
    received: list[dict] = []
    failures = {"left": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/hooks/abc":
                self.send_response(404)
                self.end_headers()
                return
            if failures["left"]:
                failures["left"] -= 1
                self.send_response(503)
                self.end_headers()
                return
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/abc"
    server.received, server.failures = received, failures
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sent(monkeypatch):
    """The Celery messages that would leave for the broker (the broker is what leaves the process)."""
    out: list[tuple[str, dict]] = []
    monkeypatch.setattr(messages.current_app, "send_task", lambda name, kwargs, countdown=None: out.append((name, kwargs)))
    return out


def _run(kwargs: dict):
    """Run the task here as the default-queue worker would (retries included, without their countdown)."""
    return notify_task.apply(kwargs=kwargs).get()


def test_recipients_follow_preferences_and_roles():
    default = UserFactory(email="default@example.org")
    hook_only = UserFactory(email="hook@example.org")
    NotificationPreference.objects.create(user=hook_only, by_email=False, webhook_url="http://127.0.0.1:9/h",
                                          request_failed=True, observatory_alarm=True)
    muted = UserFactory(email="muted@example.org")
    NotificationPreference.objects.create(user=muted, request_failed=False)
    operator = UserFactory(email="op@example.org", role=User.Role.OPERATOR)
    pending = UserFactory(email="pending@example.org", account_state=User.AccountState.PENDING)
    admin = UserFactory(email="admin@example.org", role=User.Role.ADMINISTRATOR)

    everyone = [u.pk for u in (default, hook_only, muted, operator, pending, admin)]
    got = notifications.recipients(kind="request_failed", user_ids=everyone)
    assert {(d.channel, d.address) for d in got} == {
        ("email", "default@example.org"), ("webhook", "http://127.0.0.1:9/h"), ("email", "op@example.org"),
        ("email", "admin@example.org")}
    # An astronomer who ticked the alarm still does not get it; operators and administrators do.
    alarm = {d.address for d in notifications.recipients(kind="observatory_alarm")}
    assert alarm == {"op@example.org", "admin@example.org"}
    assert {d.address for d in notifications.recipients(kind="account_waiting")} == {"admin@example.org"}


def test_failed_request_reaches_its_owner_by_email_and_webhook_after_commit(
        smtp_server, webhook, sent, django_capture_on_commit_callbacks):
    owner = UserFactory(email="ada@example.org")
    NotificationPreference.objects.create(user=owner, webhook_url=webhook.url)
    other = UserFactory(email="other@example.org")
    request = RequestFactory(owner=owner, name="M51 deep", status=lifecycle.EXECUTING)
    SequenceFactory(request=request, status=lifecycle.EXECUTING)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        request_set_status(request_id=request.pk, status=lifecycle.FAILED, reason="dome closed all night")
        assert sent == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert [name for name, _ in sent] == ["pyros.common.notify"]
    kwargs = sent[0][1]
    assert kwargs["user_ids"] == [owner.pk] and kwargs["kind"] == "request_failed"

    assert _run(kwargs) == 2
    (rcpt, mail), = smtp_server.received
    assert rcpt == ["ada@example.org"] and other.email not in rcpt
    assert "M51 deep" in str(make_header(decode_header(mail["Subject"])))
    text = mail.get_payload(decode=True).decode()
    assert "dome closed all night" in text and f"http://127.0.0.1:8000/requests/{request.pk}/" in text
    (hook,) = webhook.received
    assert "M51 deep" in hook["text"] and "failed" in hook["text"] and hook["link"].endswith(f"/requests/{request.pk}/")


def test_a_webhook_that_fails_is_retried_alone(smtp_server, webhook):
    user = UserFactory(email="grace@example.org")
    NotificationPreference.objects.create(user=user, webhook_url=webhook.url)
    webhook.failures["left"] = 2  # 503 twice, then up again

    delivered = _run({"kind": "grb_triggered", "subject": "GRB 261204A", "body": "b", "link": "", "user_ids": None})
    assert len(webhook.received) == 1  # third attempt
    assert len(smtp_server.received) == 1  # the e-mail was not sent again by the retries
    assert delivered == 1  # the last attempt delivered the one that was left


def test_a_dead_smtp_server_neither_raises_nor_blocks(settings, webhook):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # nothing listens there
    user = UserFactory(email="linus@example.org")
    failed = notifications.deliver(deliveries=notifications.recipients(kind="request_executed", user_ids=[user.pk]),
                                   subject="s", body="b", link="")
    assert [d.channel for d in failed] == ["email"]  # transient: to be retried
    # A webhook that answers 404 is gone: given up at once.
    failed = notifications.deliver(deliveries=[notifications.Delivery("webhook", webhook.url.replace("hooks", "x"))],
                                   subject="s", body="b", link="")
    assert failed == [] and webhook.received == []


def test_grb_message_has_position_time_since_trigger_and_link(sent, django_capture_on_commit_callbacks):
    from alert_manager.strategies import notify_triggered
    from pyrosapp.models import AlertEvent, Strategy

    now = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)
    event = AlertEvent.objects.create(name="GRB 261204A", missions=["Swift"], burst_time=now - timedelta(minutes=7),
                                      ra_deg=123.4567, dec_deg=-12.3456, error_deg=3 / 60)
    strategy = Strategy.objects.create(name="GRB default")
    with django_capture_on_commit_callbacks(execute=True):
        notify_triggered(event=event, strategy=strategy, ra_deg=123.4567, dec_deg=-12.3456, now=now)
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:  # published from a thread: the pre-emption does not wait
        time.sleep(0.02)
    (name, kwargs), = sent
    assert name == "pyros.common.notify" and kwargs["kind"] == "grb_triggered" and kwargs["user_ids"] is None
    assert "RA 08h13m49.61s, Dec -12°20′44.2″ (123.4567°, -12.3456°) ± 3′" in kwargs["body"] and "7.0 min after the trigger" in kwargs["body"]
    assert kwargs["link"] == f"http://127.0.0.1:8000/alerts/{event.pk}/"


def test_a_registration_tells_the_administrators(client, sent, webhook, smtp_server,
                                                 django_capture_on_commit_callbacks):
    admin = UserFactory(email="admin@example.org", role=User.Role.ADMINISTRATOR)
    NotificationPreference.objects.create(user=admin, by_email=False, webhook_url=webhook.url)
    UserFactory(email="op@example.org", role=User.Role.OPERATOR)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("user_manager:register"), {
            "email": "newcomer@example.org", "first_name": "New", "last_name": "Comer", "institute": "IRAP",
            "password1": "a-long-enough-pass-42", "password2": "a-long-enough-pass-42"})
    assert User.objects.filter(email="newcomer@example.org").exists()
    (kwargs,) = [k for name, k in sent if name == "pyros.common.notify"]
    smtp_server.received.clear()  # mail_admins' own message, if any
    assert _run(kwargs) == 1
    (hook,) = webhook.received
    assert "awaits validation" in hook["text"] and "/admin/pyrosapp/user/" in hook["link"]
    assert smtp_server.received == []


def test_profile_form_saves_preferences_by_role(client):
    astronomer = UserFactory(email="ada@example.org")
    client.force_login(astronomer)
    page = client.get(reverse("user_manager:profile")).content.decode()
    assert 'name="grb_triggered"' in page and 'name="observatory_alarm"' not in page
    assert 'name="account_waiting"' not in page
    response = client.post(reverse("user_manager:notification_preferences"), {
        "by_email": "", "webhook_url": "https://chat.example.org/hooks/xyz", "request_scheduled": "on",
        "request_failed": "on", "observatory_alarm": "on"})
    assert response.status_code == 302
    pref = NotificationPreference.objects.get(user=astronomer)
    assert (pref.by_email, pref.webhook_url, pref.request_scheduled, pref.request_executed) == (
        False, "https://chat.example.org/hooks/xyz", True, False)
    assert client.post(reverse("user_manager:notification_preferences"),
                       {"webhook_url": "not a url"}).status_code == 400

    operator = UserFactory(email="op@example.org", role=User.Role.OPERATOR)
    client.force_login(operator)
    assert 'name="observatory_alarm"' in client.get(reverse("user_manager:profile")).content.decode()


def test_a_silent_alert_stream_tells_the_operators_once(sent, django_capture_on_commit_callbacks, monkeypatch):
    import time

    import django.db

    # The intake process closes stale connections before each report; the test's transaction must stay open.
    monkeypatch.setattr(django.db, "close_old_connections", lambda: None)

    from alert_manager.kafka_consumer import HealthSnapshot
    from alert_manager.kafka_process import save_health

    def snapshot(alarm: bool) -> HealthSnapshot:
        now = time.time()
        return HealthSnapshot(
            at=now, state="connected", connected=True, server="kafka.gcn.nasa.gov", group="pyros", started_at=now - 300,
            connected_since=now - 300, disconnected_since=None, last_heartbeat_at=now - (90 if alarm else 1),
            heartbeat_age_s=90.0 if alarm else 1.0, heartbeat_alarm=alarm, heartbeats=3, messages=0, stored=0,
            duplicates=0, store_failures=0, store_failing=False, commits=0, consumer_restarts=0, last_error=None,
            last_error_at=None)

    with django_capture_on_commit_callbacks(execute=True):
        for alarm in (False, True, True, True, False):
            save_health(snapshot(alarm))
    subjects = [k["subject"] for name, k in sent if name == "pyros.common.notify"]
    assert subjects == ["alert stream silent: no GCN heartbeat", "alert stream back"]
    assert all(k["kind"] == "observatory_alarm" for _, k in sent)
    assert "no gcn.heartbeat message for 90 s" in sent[0][1]["body"]


def test_weather_turning_unsafe_tells_the_operators(sent):
    import time

    from majordome.safety import observatory_set_safety
    from pyrosapp.models import ObservatoryState, Site

    site = Site.objects.create(name="OHP", latitude_deg=43.93, longitude_deg=5.71, elevation_m=650, is_active=True)
    ObservatoryState.objects.create(site=site, phase="night", mode="automatic", safety="safe")
    observatory_set_safety(safe=False, reasons=["rain 2.0 mm/h"])
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:  # sent from a thread: the safety poll never waits for it
        time.sleep(0.02)
    (name, kwargs), = sent
    assert kwargs["kind"] == "observatory_alarm" and kwargs["subject"] == "weather alarm: rain 2.0 mm/h"
    observatory_set_safety(safe=False, reasons=["rain 3.0 mm/h"])  # still unsafe: no second message
    time.sleep(0.2)
    assert len(sent) == 1
