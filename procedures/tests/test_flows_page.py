"""A flow's page in Chromium: the steps as a live tree, the worker killed with SIGKILL mid-loop, then Recover
(with its confirmation) from the page; the recovery run redoes only the unfinished points (counted)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from common.testing import scaled_s, wait_until
from common.testing import test_database_url as database_url
from procedures import services
from procedures.models import QueueItem, QueueState, StepRun
from procedures.testing import queue_manager
from pyrosapp.models import ObservatoryState, User
from pyrosapp.tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOOP = '''
from procedures.sdk import Flow, Loop, Step, procedure

def setup(ctx):
    ctx.publish(ready=True)

def work(ctx, *, done_file: str, hold_s: float):
    ctx.set_progress(0, 1, f"point {ctx.key}")
    ctx.sleep(hold_s)
    with open(done_file, "a") as out:  # one line per finished point: the test counts them
        out.write(f"{ctx.key}\\n")
    ctx.publish(point=ctx.value, squared=ctx.value ** 2)

def total(ctx):
    return sum(i["work"]["squared"] for i in ctx.data["points"])

@procedure(timeout_s=120, sky="none")
def ten_points(ctx, *, done_file: str, hold_s: float = 0.5):
    """Ten points, one after the other, then their total."""
    return Flow(Step("setup", setup),
                Loop("points", list(range(1, 11)), Step("work", work, params={"done_file": done_file, "hold_s": hold_s}),
                     require="setup"),
                Step("total", total, require="points"))
'''


def test_operator_recovers_a_killed_flow_from_its_page(require_chromium, page, live_server, transactional_db,
                                                       procedures_dir, tmp_path, client, screenshot_dir):
    from pyros.demo import seed_demo

    seed_demo()
    ObservatoryState.objects.update(mode="manual", safety="safe")
    (procedures_dir / "loops.py").write_text(LOOP)
    services.procedures_reload(directory=procedures_dir)
    client.force_login(UserFactory(role=User.Role.OPERATOR))
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                               "url": live_server.url}])
    done_file = tmp_path / "done.txt"
    item = services.queue_item_add(procedure="ten_points", params={"done_file": str(done_file), "hold_s": 1.5},
                                   by="test")
    env = {"PYROS_PROCEDURES_DIR": str(procedures_dir), "PYROS_INDI_PORT": "1"}
    with queue_manager(database_url=database_url(), env=env, log_path=tmp_path / "manager.log"):
        services.queue_start(by="test")
        page.goto(f"{live_server.url}/procedures/items/{item.uid}/")
        # The tree is live: point 4 is seen running on the page, then the worker is killed.
        page.wait_for_selector('li[data-path="points/4/work"][data-state=running]', timeout=scaled_s(60) * 1000)
        assert page.locator('li[data-path="points/3/work"]').get_attribute("data-state") == "succeeded"
        os.kill(QueueState.objects.get().env_pid, signal.SIGKILL)
        page.wait_for_selector('li[data-path="points/4/work"][data-state=failed]', timeout=scaled_s(20) * 1000)
        assert "interrupted: the worker process died (killed by SIGKILL)" in page.inner_text(
            'li[data-path="points/4/work"]')
        assert page.inner_text("#item-status") == "failed"
        assert page.locator('li[data-path="points/7/work"]').get_attribute("data-state") == "pending"
        assert Path(done_file).read_text().split() == ["1", "2", "3"]
        page.screenshot(path=str(screenshot_dir / "procedures-flow-killed.png"))

        dialogs = []
        page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        page.click("#recover-btn")
        page.wait_for_selector("#recovery-link", timeout=scaled_s(10) * 1000)
        assert dialogs and "steps that succeeded are not run again" in dialogs[0]
        recovery = QueueItem.objects.get(recovers=item)
        page.click("#recovery-link")
        page.wait_for_url(f"**/procedures/items/{recovery.uid}/")
        page.wait_for_selector("#item-status:text-is('completed')", timeout=scaled_s(60) * 1000)
        page.wait_for_selector('li[data-path="total"][data-state=succeeded]')
        assert "done before" in page.inner_text('li[data-path="points/3/work"]')
        assert "done before" not in page.inner_text('li[data-path="points/4/work"]')
        page.screenshot(path=str(screenshot_dir / "procedures-flow-recovered.png"))

    # Each point finished exactly once over the two runs; the total saw all ten.
    assert sorted(Path(done_file).read_text().split(), key=int) == [str(i) for i in range(1, 11)]
    recovery.refresh_from_db()
    assert recovery.status == "completed"
    assert StepRun.objects.get(run__item=recovery, path="total").data == {"result": sum(i * i for i in range(1, 11))}
    assert StepRun.objects.filter(run__item=recovery, kind="step", reused=True).count() == 4  # setup + 3 points
    assert wait_until(lambda: QueueItem.objects.filter(status="running").count() == 0, timeout_s=5)
