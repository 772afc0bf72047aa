"""Notifications by e-mail and webhook, per user preferences (issue #16).

Senders never deliver anything themselves: they call :func:`notify` (a Celery message by name,
``pyros.common.notify`` on the default queue, sent after commit), so a slow SMTP server or a dead
webhook can never hold the alert path, the safety loop or a web request. The task
(``common.tasks.notify``) asks :func:`recipients` who wants this kind, delivers with
:func:`deliver_email` / :func:`deliver_webhook` and retries only the deliveries that failed
transiently (``NotificationError(permanent=False)``), as healthchecks' transports do.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from common.messages import send_after_commit, send_now
from pyrosapp.models import NotificationPreference, User

log = logging.getLogger("pyros.common")

# kind -> (preference field, roles allowed to receive it; None = anyone concerned)
KINDS: dict[str, tuple[str, frozenset[str] | None]] = {
    "request_scheduled": ("request_scheduled", None),
    "request_executed": ("request_executed", None),
    "request_failed": ("request_failed", None),
    "images_analysed": ("images_analysed", None),
    "grb_triggered": ("grb_triggered", None),
    "observatory_alarm": ("observatory_alarm", frozenset({User.Role.OPERATOR, User.Role.ADMINISTRATOR})),
    "account_waiting": ("account_waiting", frozenset({User.Role.ADMINISTRATOR})),
}
WEBHOOK_TIMEOUT_S = 5.0


class NotificationError(Exception):
    """A delivery that failed; ``permanent`` says whether trying again can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Delivery:
    channel: str  # "email" or "webhook"
    address: str  # an e-mail address or a URL

    def as_list(self) -> list[str]:
        return [self.channel, self.address]


def site_link(path: str) -> str:
    """An absolute link into PyROS (``PYROS_SITE_URL``: what the recipients can reach)."""
    if not path or path.startswith(("http://", "https://")):
        return path
    return settings.PYROS_SITE_URL.rstrip("/") + "/" + path.lstrip("/")


def notify(kind: str, *, subject: str, body: str, link: str = "", user_ids: list[int] | None = None,
           background: bool = False) -> None:
    """Tell the users who want ``kind`` (``user_ids``: only these, e.g. a request's owner; None: every
    user whose role may receive it, e.g. GRB alerts and alarms). Sent after the current transaction
    commits; never raises (a broker refusal is logged by ``send_now``). ``background``: published from a
    thread, for latency paths (an alert's pre-emption follows the commit: it must not wait for the broker)."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    kwargs = {"kind": kind, "subject": subject[:200], "body": body, "link": site_link(link),
              "user_ids": list(user_ids) if user_ids is not None else None}
    if not background:
        send_after_commit("pyros.common.notify", **kwargs)
        return
    transaction.on_commit(lambda: threading.Thread(target=send_now, args=("pyros.common.notify",), kwargs=kwargs,
                                                   name="pyros-notify", daemon=True).start())


def recipients(*, kind: str, user_ids: list[int] | None = None) -> list[Delivery]:
    """Where to deliver ``kind``: validated, active users who ticked it (defaults for users who never
    saved their preferences), restricted to the kind's roles."""
    field, roles = KINDS[kind]
    users = User.objects.filter(is_active=True, account_state=User.AccountState.VALIDATED)
    if user_ids is not None:
        users = users.filter(pk__in=user_ids)
    if roles is not None:
        users = users.filter(role__in=roles)
    default = NotificationPreference._meta.get_field(field).default
    prefs = {p.user_id: p for p in NotificationPreference.objects.filter(user__in=users)}
    deliveries: list[Delivery] = []
    for user in users.order_by("pk"):
        pref = prefs.get(user.pk)
        wants = getattr(pref, field) if pref else default
        if not wants:
            continue
        if pref is None or pref.by_email:
            deliveries.append(Delivery("email", user.email))
        if pref is not None and pref.webhook_url:
            deliveries.append(Delivery("webhook", pref.webhook_url))
    return deliveries


def message_text(*, subject: str, body: str, link: str) -> str:
    return "\n".join(part for part in (subject, body, link) if part)


def deliver_email(*, to: str, subject: str, body: str, link: str) -> None:
    try:
        send_mail(f"PyROS: {subject}", message_text(subject="", body=body, link=link), None, [to])
    except (OSError, ConnectionError) as exc:  # smtplib's errors are OSErrors: the server may come back
        raise NotificationError(f"e-mail to {to} not sent: {exc}") from exc


def deliver_webhook(*, url: str, subject: str, body: str, link: str) -> None:
    """POST ``{"text": ...}`` (Slack and Mattermost incoming webhooks both read ``text``)."""
    text = f"*{subject}*\n{body}" + (f"\n<{link}>" if link else "")
    payload = json.dumps({"text": text, "subject": subject, "body": body, "link": link}).encode()
    req = urllib.request.Request(url, data=payload, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "PyROS"})
    try:
        with urllib.request.urlopen(req, timeout=WEBHOOK_TIMEOUT_S) as answer:  # noqa: S310 - user's URL
            answer.read(1024)
    except urllib.error.HTTPError as exc:
        # 4xx: the hook is wrong or gone, trying again will not help (429 excepted); 5xx: it may come back.
        permanent = 400 <= exc.code < 500 and exc.code != 429
        raise NotificationError(f"webhook answered {exc.code}", permanent=permanent) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise NotificationError(f"webhook not reached: {exc}", permanent=isinstance(exc, ValueError)) from exc


def deliver(*, deliveries: list[Delivery], subject: str, body: str, link: str) -> list[Delivery]:
    """Deliver to each; the deliveries that failed transiently are returned (to be retried)."""
    retry: list[Delivery] = []
    for delivery in deliveries:
        try:
            if delivery.channel == "email":
                deliver_email(to=delivery.address, subject=subject, body=body, link=link)
            else:
                deliver_webhook(url=delivery.address, subject=subject, body=body, link=link)
        except NotificationError as exc:
            # The address is not logged: an astronomer's log view must not show other users' e-mails.
            log.warning("notification %r by %s failed%s: %s", subject, delivery.channel,
                        " (given up)" if exc.permanent else " (will retry)", str(exc).replace(delivery.address, "…"))
            if not exc.permanent:
                retry.append(delivery)
    return retry
