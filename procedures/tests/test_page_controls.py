"""The queue page's and the item page's controls in Chromium, as an operator trips over them: irreversible
commands ask first, an empty queue is not 'item 1', the worker's pid and the procedure block are on the page
(with the block's own control), an abort says what it leads to, a script's item page gives its log the room."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from procedures import services
from procedures.models import FlowRun, QueueItem, QueueState
from pyrosapp.models import User
from pyrosapp.tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def operator_page(require_chromium, page, live_server, transactional_db, procedures_dir, client):
    from pyros.demo import seed_demo

    seed_demo()
    services.procedures_reload(directory=procedures_dir)
    client.force_login(UserFactory(role=User.Role.OPERATOR))
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                               "url": live_server.url}])
    page.set_default_timeout(10_000)
    return page


def _answer(page, accept: bool, seen: list[str]) -> None:
    page.once("dialog", lambda d: (seen.append(d.message), d.accept() if accept else d.dismiss()))


def test_queue_page_asks_before_irreversible_commands_and_shows_pid_and_block(operator_page, live_server,
                                                                               screenshot_dir):
    page = operator_page
    services.queue_start(by="test")
    QueueState.objects.update(env_status="idle", env_pid=4242)
    first = services.queue_item_add(procedure="count_up", params={"n": 2}, by="test")
    services.queue_item_add(procedure="count_up", params={"n": 3}, by="test")
    page.goto(f"{live_server.url}/procedures/")
    page.wait_for_selector("#queue-items li[data-uid]")
    assert "(pid 4242)" in page.inner_text("#env-state")
    assert page.is_disabled("#abort-btn") and page.is_disabled("#pause-now-btn")  # nothing runs
    assert page.inner_text("#block-state") == "no procedure block"
    link = page.locator(f'#queue-items li[data-uid="{first.uid}"] a')
    assert link.get_attribute("href") == f"/procedures/items/{first.uid}/"

    seen: list[str] = []
    _answer(page, False, seen)  # ✕ then Cancel: nothing removed
    page.locator(f'#queue-items li[data-uid="{first.uid}"] button[data-remove]').click()
    page.wait_for_timeout(300)
    assert seen == ["Remove count_up from the queue?"] and QueueItem.objects.filter(status="queued").count() == 2
    _answer(page, False, seen)
    page.click("#clear-btn")
    page.wait_for_timeout(300)
    assert "Remove every queued item?" in seen[-1] and QueueItem.objects.filter(status="queued").count() == 2
    _answer(page, True, seen)
    page.click("#clear-btn")
    page.wait_for_selector("#queue-empty:not(.d-none)")
    assert not QueueItem.objects.filter(status="queued").exists()
    assert page.is_hidden("#queue-items") and page.inner_text("#queue-empty") == "empty"  # not '1. empty'
    assert page.is_disabled("#clear-btn")

    # The procedure block, opened and closed from the page (the waiting message tells the operator to open one).
    page.fill("#block-minutes", "30")
    page.click("#block-open-btn")
    page.wait_for_selector("#block-close-btn:not(.d-none)")
    until = QueueState.objects.get().block_until
    assert timedelta(minutes=29) < until - timezone.now() <= timedelta(minutes=30)
    assert page.inner_text("#block-state") == f"procedure block until {until:%Y-%m-%d %H:%M} UTC"
    assert "open until" in page.inner_text("#message")
    page.click("#block-close-btn")
    page.wait_for_function("document.querySelector('#block-state').textContent === 'no procedure block'")
    assert QueueState.objects.get().block_until is None

    # Abort and Pause now: enabled while an item runs, and they ask first.
    running = QueueItem.objects.create(procedure="count_up", params={"n": 2}, timeout_s=60, sky="none",
                                       status="running", started_at=timezone.now())
    services.queue_start(by="test")  # a version bump: the page redraws
    page.wait_for_selector("#abort-btn:not([disabled])")
    _answer(page, False, seen)
    page.click("#abort-btn")
    page.wait_for_timeout(300)
    assert "Abort the running item now?" in seen[-1]
    assert not QueueItem.objects.get(pk=running.pk).abort_requested
    _answer(page, False, seen)
    page.click("#pause-now-btn")
    page.wait_for_timeout(300)
    assert "Pause now?" in seen[-1] and not QueueState.objects.get().paused
    _answer(page, True, seen)
    page.click("#abort-btn")
    page.wait_for_function("document.querySelector('#message').textContent.includes('abort of count_up requested')")
    assert QueueItem.objects.get(pk=running.pk).abort_requested == "abort"
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(screenshot_dir / "procedures-queue-controls-375.png"), full_page=True)


def test_item_page_abort_says_what_follows_and_a_script_log_gets_the_width(operator_page, live_server,
                                                                          screenshot_dir):
    page = operator_page
    script = QueueItem.objects.create(procedure="disk_check", params={}, timeout_s=60, sky="none",
                                      status="running", started_at=timezone.now(),
                                      published={"disks": [{"path": "/data", "free_gb": 80.4}]},
                                      log=[["2026-12-05T00:38:03+00:00", "INFO", "disk_check.py> 6 FITS file(s)"]])
    page.goto(f"{live_server.url}/procedures/items/{script.uid}/")
    page.wait_for_selector("#item-published")
    # Not a flow: no empty 'Steps' card, the log takes the page's width; the published data is readable.
    assert page.is_hidden("#steps-col")
    assert page.evaluate("document.querySelector('#item-log').getBoundingClientRect().width") > 900
    assert '"free_gb": 80.4' in page.inner_text("#item-published")
    seen: list[str] = []
    _answer(page, False, seen)
    page.click("#abort-btn")
    page.wait_for_timeout(300)
    assert "the queue goes on with the next item" in seen[-1] and "recover" not in seen[-1].lower()
    page.screenshot(path=str(screenshot_dir / "procedures-item-script.png"), full_page=True)

    QueueItem.objects.filter(pk=script.pk).update(status="completed", ended_at=timezone.now())
    flow = QueueItem.objects.create(procedure="count_up", params={}, timeout_s=60, sky="none", status="running",
                                    started_at=timezone.now())
    FlowRun.objects.create(item=flow, started_at=timezone.now())
    page.goto(f"{live_server.url}/procedures/items/{flow.uid}/")
    page.wait_for_selector("#abort-btn:not(.d-none)")
    assert page.is_visible("#steps-col")
    _answer(page, False, seen)
    page.click("#abort-btn")
    page.wait_for_timeout(300)
    assert "Recover runs afterwards what did not succeed" in seen[-1]


def test_queue_page_says_when_the_manager_stops_answering(operator_page, live_server):
    """A manager that dies bumps no version: the open page must still stop calling its environment alive."""
    page = operator_page
    QueueState.objects.update(env_status="idle", env_pid=4242, manager_heartbeat=timezone.now() + timedelta(hours=1))
    page.goto(f"{live_server.url}/procedures/")
    page.wait_for_function("document.querySelector('#env-state').textContent === 'environment idle (pid 4242)'")
    QueueState.objects.update(manager_heartbeat=timezone.now() - timedelta(minutes=1))  # no version bump
    page.wait_for_function("document.querySelector('#env-state').textContent.endsWith('(manager not running)')",
                           timeout=5_000)
    assert "text-bg-danger" in page.get_attribute("#env-state", "class")


def test_queue_page_history_goes_back_further_and_again_on_a_flow_asks(operator_page, live_server):
    """The page showed the last 10 ended items and no way to older ones; 'again' on a failed flow (every point
    taken again) sat beside 'recover' and acted at once."""
    page = operator_page
    now = timezone.now()
    for i in range(14):
        QueueItem.objects.create(procedure="count_up", params={"n": i + 1}, timeout_s=60, sky="none",
                                 status="completed", ended_at=now - timedelta(minutes=i + 1))
    flow = QueueItem.objects.create(procedure="count_up", params={"n": 99}, timeout_s=60, sky="none",
                                    status="failed", ended_at=now)
    FlowRun.objects.create(item=flow, started_at=now)
    page.goto(f"{live_server.url}/procedures/")
    page.wait_for_function("document.querySelectorAll('#history tr').length === 10")
    assert page.inner_text("#history-count") == "the latest 10"
    page.click("#history-more-btn")
    page.wait_for_function("document.querySelectorAll('#history tr').length === 15")
    assert page.inner_text("#history-count") == "15 of 15" and page.is_hidden("#history-more-btn")
    body = _client_json(page, "/api/queue/history/?limit=3&log=false")
    assert len(body["items"]) == 3 and "log" not in body["items"][0] and body["count"] == 15

    seen: list[str] = []
    _answer(page, False, seen)
    page.click(f'#history tr[data-uid="{flow.uid}"] button[data-requeue]')
    page.wait_for_timeout(300)
    assert "again from the start? Every step runs again" in seen[-1]
    assert not QueueItem.objects.filter(status="queued").exists()
    plain = QueueItem.objects.filter(status="completed").order_by("-ended_at").first()
    page.click(f'#history tr[data-uid="{plain.uid}"] button[data-requeue]')  # not a flow: no question
    page.wait_for_function("document.querySelectorAll('#queue-items li[data-uid]').length === 1")
    assert len(seen) == 1


def _client_json(page, path: str) -> dict:
    return page.evaluate(f"fetch({path!r}, {{credentials: 'same-origin'}}).then((r) => r.json())")
