"""The procedures page in Chromium: add with the generated form, reorder, start, watch progress and the live log."""

from __future__ import annotations

import pytest

from common.testing import scaled_s
from common.testing import test_database_url as database_url
from procedures import services
from procedures.models import QueueItem
from procedures.testing import queue_manager
from pyrosapp.models import ObservatoryState, User
from pyrosapp.tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_operator_queues_reorders_starts_and_watches(require_chromium, page, live_server, transactional_db,
                                                       procedures_dir, tmp_path, client, screenshot_dir):
    from pyros.demo import seed_demo

    seed_demo()
    ObservatoryState.objects.update(mode="manual", safety="safe")
    services.procedures_reload(directory=procedures_dir)
    user = UserFactory(role=User.Role.OPERATOR)
    client.force_login(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                               "url": live_server.url}])
    page.goto(f"{live_server.url}/procedures/")
    page.select_option("#procedure-select", "count_up")
    page.fill("#param-form input[name=n]", "3")
    page.click("#add-btn")
    page.wait_for_selector("#queue-items li[data-uid]")
    page.fill("#param-form input[name=n]", "25")
    page.fill("#param-form input[name=pause_s]", "0.2")
    page.click("#add-btn")
    page.wait_for_function("document.querySelectorAll('#queue-items li[data-uid]').length === 2")
    # Move the long one to the front with its button.
    page.locator("#queue-items li[data-uid]").nth(1).locator("button[data-move=up]").click()
    page.wait_for_function("document.querySelector('#queue-items li[data-uid]').textContent.includes('25')")
    assert [i.params["n"] for i in QueueItem.objects.filter(status="queued")] == [25, 3]
    env = {"PYROS_PROCEDURES_DIR": str(procedures_dir), "PYROS_INDI_PORT": "1"}
    with queue_manager(database_url=database_url(), env=env, log_path=tmp_path / "manager.log"):
        page.click("button[data-cmd=start]")
        page.wait_for_selector("#running-name", timeout=scaled_s(60) * 1000)
        page.wait_for_function("parseFloat(document.querySelector('#progress-bar').style.width) > 10",
                               timeout=scaled_s(20) * 1000)
        assert "count" in page.inner_text("#live-log")
        page.screenshot(path=str(screenshot_dir / "procedures-queue-running.png"))
        page.wait_for_function("document.querySelectorAll('#history tr').length === 2", timeout=scaled_s(60) * 1000)
    assert list(QueueItem.objects.order_by("started_at").values_list("status", "params__n")) == [
        ("completed", 25), ("completed", 3)]
