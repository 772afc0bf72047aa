"""Why a sequence is not in tonight's plan, in words: the schedule page, the API and the request page say it
the same way, from one code and its values (scheduler/reasons.py)."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from pyrosapp import models as m
from pyrosapp.tests import factories as f
from scheduler import services
from scheduler.reasons import Reason, reason_text
from scheduler.tests.test_services import NIGHT_NOW, add_sequence, night  # noqa: F401  (fixture)

# At 22:00 UTC on 2026-12-16 the Moon is low in the west, near RA 351 deg, Dec -1 (Pisces): this target is
# 14 deg from it and above 15 deg for the first hour.
NEAR_MOON = (0.0, 8.0)
# RA 13 h, Dec +20 rises above 30 deg at OHP only after 02:00 UTC in mid-December.
LATE_RISER = (195.0, 20.0)


def _night_with_three_reasons():
    alert_request = f.RequestFactory(status=m.Request.Status.SUBMITTED, is_alert=True, name="Swift GRB 261216A")
    window = {"window_start": NIGHT_NOW, "window_end": NIGHT_NOW + timedelta(minutes=50)}
    alert = add_sequence("GRB 261216A", ra_dec=(56.0, 24.0), request=alert_request, duration_s=1800.0, **window)
    displaced = add_sequence("M45", priority=9, duration_s=1800.0, **window)
    moon = add_sequence("Near the Moon", ra_dec=NEAR_MOON, min_moon_separation_deg=30.0, duration_s=1800.0)
    m.Sequence.objects.filter(pk=moon.pk).update(min_altitude_deg=10.0)
    late = add_sequence("Late riser", ra_dec=LATE_RISER, duration_s=7200.0,
                        window_end=NIGHT_NOW.replace(hour=4) + timedelta(days=1))
    schedule = services.schedule_make(reason="test").schedule
    return schedule, alert, displaced, moon, late


@pytest.mark.django_db
def test_displaced_moon_and_altitude_reasons_in_words_on_the_page_the_api_and_the_request(night, client):  # noqa: F811
    schedule, alert, displaced, moon, late = _night_with_three_reasons()
    rows = {e.sequence_id: e for e in schedule.entries.all()}
    assert rows[alert.pk].status == "planned"
    words = {seq.pk: rows[seq.pk].rejection_reason for seq in (displaced, moon, late)}

    assert words[displaced.pk].startswith(
        f"displaced by higher-priority sequence #{alert.pk} GRB 261216A (request “Swift GRB 261216A”, an alert): "
        "its possible starts (2026-12-16 22:00–22:20 UTC) are taken")
    assert re.fullmatch(r"not observable: Moon 1\d° away \(minimum 30°\)", words[moon.pk]), words[moon.pk]
    assert re.fullmatch(r"not observable: below the altitude limit of 30° until 0[23]:\d\d UTC, which leaves \d+ min "
                        r"before 04:00 UTC \(end of the night or of its window\); it needs 2\.0 h", words[late.pk]), \
        words[late.pk]
    # No internal score in any of them.
    assert not any("value" in text or "1000" in text for text in words.values())

    # The API: the same words, and the code with its values.
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=f.UserFactory()).key}")
    rejected = {r["sequence"]: r for r in api.get("/api/schedule/current/").json()["rejected"]}
    assert {pk: r["reason"] for pk, r in rejected.items()} == words
    assert rejected[displaced.pk]["code"] == "displaced"
    [by] = rejected[displaced.pk]["values"]["by"]
    assert (by["sequence"], by["alert"], by["request"]) == (alert.pk, True, "Swift GRB 261216A")
    assert rejected[moon.pk]["code"] == "moon_too_close"
    assert rejected[moon.pk]["values"]["min_moon_deg"] == 30.0 and 10 < rejected[moon.pk]["values"]["moon_deg"] < 20
    assert rejected[late.pk]["code"] == "too_low" and rejected[late.pk]["values"]["rises"] is True

    # The schedule page and each request's page show the same sentences.
    client.force_login(f.UserFactory(role=m.User.Role.ASTRONOMER))
    page = html.unescape(client.get("/schedule/").content.decode())
    rejected_table = page.split('id="rejected-table"')[1].split("</table>")[0]
    for text in words.values():
        assert text in rejected_table
    for sequence in (displaced, moon, late):
        sequence.refresh_from_db()
        assert sequence.status_reason == words[sequence.pk]
        owner_client = type(client)()
        owner_client.force_login(sequence.request.owner)
        request_page = html.unescape(owner_client.get(f"/requests/{sequence.request_id}/").content.decode())
        assert words[sequence.pk] in request_page


def test_every_code_has_its_own_sentence():
    values = {"duration_s": 1800, "night_end": "2026-12-17T05:21:00Z", "plan_start": "2026-12-16T22:00:00Z",
              "latest_start": "2026-12-16T20:00:00Z", "earliest_start": "2026-12-20T18:00:00Z",
              "window_start": "2026-12-16T22:00:00Z", "window_end": "2026-12-16T22:20:00Z", "twilight_deg": -18,
              "limit_deg": 30.0, "max_airmass": None, "highest_deg": 22.4, "highest_at": "2026-12-17T03:10:00Z",
              "min_moon_deg": 30.0, "moon_deg": 12.2, "program": "GRB", "left_s": 600, "after_others": True,
              "by": [{"sequence": 5, "target": "M42", "request": "Nebulae", "alert": False, "program_priority": 0,
                      "priority": 7}], "more": 2, "priority": 5, "program_priority": 0, "possible_from": "2026-12-16T22:00:00Z", "possible_to": "2026-12-16T23:40:00Z"}
    expected = {
        "night_over": "the night is over (it ended at 2026-12-17 05:21 UTC)",
        "window_closed": "outside its time window: it had to start by 2026-12-16 20:00 UTC",
        "window_after_night": "outside its time window: it may not start before 2026-12-20 18:00 UTC, after this "
                              "night",
        "too_low": "not observable: never above the altitude limit of 30° at night in its window (highest 22° at "
                   "03:10 UTC)",
        "moon_too_close": "not observable: Moon 12° away (minimum 30°)",
        "allocation_exhausted": "allocation exhausted: program GRB has 10 min left after its other sequences in the "
                                "plan, this sequence needs 30 min",
        "no_exposures": "no exposures defined: its duration is unknown, so it cannot be planned",
        "displaced": "displaced by higher-priority sequences #5 M42 (request “Nebulae”, priority 7 against 5) and 2 "
                     "more: its possible starts (2026-12-16 22:00–23:40 UTC) are taken",
    }
    for code, text in expected.items():
        assert reason_text(code, values) == text
    codes = ["longer_than_night", "window_outside_night", "window_not_tonight", "window_too_short", "not_dark",
             "altitude_and_moon", "fragmented", "displaced", "no_room"]
    sentences = [reason_text(code, values) for code in codes]
    assert len(set(sentences)) == len(codes) and not any(s == c.replace("_", " ") for s, c in zip(sentences, codes, strict=True))
    single = {**values, "more": 0, "by": [{**values["by"][0], "priority": 5}]}
    assert reason_text("no_room", single) == (
        "no room: its possible starts (2026-12-16 22:00–23:40 UTC) are taken by #5 M42 (request “Nebulae”), which "
        "does not outrank it but was placed first")
    assert Reason.from_dict(Reason.of("moon_too_close", moon_deg=12.2).as_dict()).text.startswith("not observable")
