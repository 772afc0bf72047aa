from __future__ import annotations

from django.conf import settings
from django.db import models


class NotificationPreference(models.Model):
    """What a user wants to be told, and where (issue #16). A user without a row gets the defaults below.

    The observatory alarms reach operators and administrators only, accounts waiting administrators only
    (``common.notifications.recipients`` checks the role whatever is ticked here).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="notification_preference")
    by_email = models.BooleanField(default=True, help_text="Send notifications to my e-mail address.")
    webhook_url = models.URLField(blank=True, help_text="Also POST them as JSON ({\"text\": ...}) to this "
                                  "Slack/Mattermost-compatible incoming webhook.")
    request_scheduled = models.BooleanField(default=False, help_text="One of my requests was scheduled.")
    request_executed = models.BooleanField(default=True, help_text="One of my requests was executed.")
    request_failed = models.BooleanField(default=True, help_text="One of my requests failed or expired.")
    images_analysed = models.BooleanField(default=False, help_text="An image of one of my requests was analysed.")
    grb_triggered = models.BooleanField(default=True, help_text="A GRB alert triggered observations.")
    observatory_alarm = models.BooleanField(default=True, help_text="Operators: the dome failed to close, a "
                                            "weather alarm, the alert stream fell silent.")
    account_waiting = models.BooleanField(default=True, help_text="Administrators: an account waits for "
                                          "validation.")

    def __str__(self) -> str:
        return f"notifications of {self.user}"
