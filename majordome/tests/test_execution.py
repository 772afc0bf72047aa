"""A sequence runs on the INDI simulators: dome, slew, filters, exposures, FITS files, Image rows,
statuses and time charged; abort is honoured within a second, on the INDI and on the ASCOM Alpaca simulators
(``any_observatory``; devices/tests/test_alpaca_execution.py runs the rest of the Alpaca cases with these
fixtures)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from astropy.io import fits
from django.utils import timezone

from common.testing import scaled_s, zenith_target
from devices.interfaces import Site as DeviceSite
from devices.testing import AlpacaSimulators, alpaca_simulators_unavailable_reason
from pyrosapp.models import Allocation, Image, Plan, Request, Sequence
from routine_manager.builder import RequestBuilder

pytestmark = [pytest.mark.slow]


def make_request(seed, plans=(("R", 1.0, 2), ("V", 1.0, 1)), name="Zenith field"):
    ra, dec = zenith_target(seed.site)
    now = timezone.now()
    builder = RequestBuilder(owner=seed.program.pi, program=seed.program, name=name)
    album = builder.add_sequence(name=name, target_name="Zenith", ra_deg=ra, dec_deg=dec,
                                 window_start=now, window_end=now + timedelta(hours=3), priority=5,
                                 min_altitude_deg=20).add_album(detector=seed.detector.name)
    for filter_name, exposure_s, count in plans:
        album.add_plan(filter=filter_name, exposure_s=exposure_s, count=count)
    request = builder.save(submit=True, check_observability=False)
    return request, request.sequences.get()


def claim(sequence: Sequence) -> str:
    from majordome.dispatch import sequence_claim
    from majordome.selectors import observatory_state

    token = sequence_claim(sequence_id=sequence.pk)
    assert token

    state = observatory_state()
    type(state).objects.filter(pk=state.pk).update(current_sequence=sequence, progress={"sequence": sequence.pk})
    return token


def _night(seed, settings, tmp_path) -> None:
    from pyrosapp.models import ObservatoryState, Telescope

    Telescope.objects.update(settle_s=0.0)
    ObservatoryState.objects.filter(site=seed.site).update(phase="night", safety="safe", mode="automatic")
    settings.PYROS_DATA_DIR = tmp_path / "data"


@pytest.fixture
def alpaca_observatory(transactional_db, settings, tmp_path, monkeypatch):
    """The demo observatory at night on the Alpaca simulators (all devices), the sky around the zenith
    rendered from devices.sky's catalogue."""
    import os

    from majordome.device_link import reset_observatory
    from pyros.demo import seed_demo

    reason = alpaca_simulators_unavailable_reason()
    if reason:
        if os.environ.get("PYROS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)
    seed = seed_demo()
    _night(seed, settings, tmp_path)
    site = seed.site
    ra, dec = zenith_target(site)
    sims = AlpacaSimulators(
        tmp_path / "alpaca",
        site=DeviceSite(site.latitude_deg, site.longitude_deg, site.elevation_m),
        fields=[(ra, dec, 1.0)],
        slew_rate_deg_s=20.0,
    ).start()
    monkeypatch.setenv("PYROS_DEVICE_BACKEND", "alpaca")
    monkeypatch.setenv("PYROS_ALPACA_HOST", sims.host)
    monkeypatch.setenv("PYROS_ALPACA_PORT", str(sims.port))
    reset_observatory()
    try:
        yield seed, sims
    finally:
        reset_observatory()
        sims.stop()


@pytest.fixture(params=["indi", "alpaca"])
def any_observatory(request, transactional_db):
    """The same test on the INDI simulators (the reference) and on the Alpaca ones."""
    fixture = "night_observatory" if request.param == "indi" else "alpaca_observatory"
    seed, _ = request.getfixturevalue(fixture)
    return request.param, seed


def test_a_sequence_executes_and_stores_its_images(night_observatory):
    from majordome.execution import sequence_execute

    seed, _port = night_observatory
    request, sequence = make_request(seed)
    token = claim(sequence)
    assert sequence_execute(sequence_id=sequence.pk, token=token) == "completed"

    sequence.refresh_from_db()
    request.refresh_from_db()
    assert sequence.status == "completed"
    assert request.status == "completed"
    images = list(Image.objects.filter(sequence=sequence).order_by("plan__order", "index_in_plan"))
    assert [(i.filter_name, i.index_in_plan) for i in images] == [("R", 1), ("R", 2), ("V", 1)]
    assert all(p.status == "completed" and p.images_done == p.count for p in Plan.objects.filter(
        album__sequence=sequence))
    from django.conf import settings

    first = images[0]
    path = Path(settings.PYROS_DATA_DIR) / first.file_path
    assert path.exists() and "Zenith_R_1s" in path.name
    header = fits.getheader(path)
    assert header["PYREQID"] == request.pk and header["PYSEQID"] == sequence.pk
    assert header["PYPLANID"] == first.plan_id and header["PYIMGNUM"] == 1
    assert header["PROGRAM"] == seed.program.name
    assert header["FILTER"] == "R" and header["EXPTIME"] == pytest.approx(1.0)
    assert header["OBSERVAT"] == seed.site.name and 1.0 <= header["AIRMASS"] < 1.2
    assert abs(header["CRVAL1"] - sequence.ra_deg) < 0.05 or abs(header["RA"] - sequence.ra_deg) < 0.05
    assert sequence.used_s > 3.0
    allocation = Allocation.objects.get(program=seed.program)
    assert allocation.used_s == pytest.approx(sequence.used_s, rel=1e-6)


def test_abort_stops_an_exposure_within_a_second(any_observatory):
    from majordome.controls import observatory_abort
    from majordome.device_link import get_observatory
    from majordome.execution import sequence_execute

    backend, seed = any_observatory
    request, sequence = make_request(seed, plans=(("R", 1.0, 1), ("B", 30.0, 2)))
    token = claim(sequence)
    result = {}
    runner = threading.Thread(target=lambda: result.update(status=sequence_execute(sequence_id=sequence.pk,
                                                                                   token=token)))
    runner.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if Plan.objects.filter(album__sequence=sequence, filter__name="B", status="running").exists() and \
                Image.objects.filter(sequence=sequence).count() == 1:
            break
        time.sleep(0.1)
    assert get_observatory().backends["camera"] == backend
    time.sleep(1.5)  # well inside the 30 s exposure
    t0 = time.monotonic()
    assert observatory_abort(by="operator@test") == sequence.pk
    runner.join(timeout=10)
    elapsed = time.monotonic() - t0
    assert not runner.is_alive()
    assert elapsed < scaled_s(1.5), f"abort took {elapsed:.2f} s"
    assert result["status"] == "partially_completed"
    sequence.refresh_from_db()
    assert "aborted by operator@test" in sequence.status_reason
    assert Image.objects.filter(sequence=sequence).count() == 1


def test_a_killed_executor_resumes_without_redoing_or_duplicating(night_observatory, settings, tmp_path):
    """SIGKILL the execution worker mid-sequence, restart it: completed plans are not redone,
    no image is duplicated, the sequence finishes."""
    import os
    import signal

    from common.testing import celery_worker, wait_until
    from majordome.dispatch import majordome_dispatch
    from majordome.night import majordome_tick
    from majordome.selectors import observatory_state

    seed, port = night_observatory
    settings.PYROS_EXECUTOR_STALE_S = 4.0
    env = {"PYROS_INDI_PORT": str(port), "PYROS_DATA_DIR": str(settings.PYROS_DATA_DIR),
           "PYROS_EXECUTOR_STALE_S": "4"}
    request, sequence = make_request(seed, plans=(("R", 1.0, 2), ("V", 2.0, 3)))
    state = observatory_state()
    type(state).objects.filter(pk=state.pk).update(preempt_sequence=sequence)
    with celery_worker("execution", env=env, log_path=tmp_path / "worker1.log") as worker:
        assert majordome_dispatch(reason="test") == f"dispatched sequence {sequence.pk}"
        wait_until(lambda: Image.objects.filter(sequence=sequence, filter_name="V").exists(), timeout_s=60,
                   what="first V image")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    first_images = {(i.plan_id, i.index_in_plan): (i.pk, i.file_path) for i in Image.objects.filter(sequence=sequence)}
    assert Sequence.objects.get(pk=sequence.pk).status == "executing"  # left behind by the dead worker
    time.sleep(4.5)
    with celery_worker("execution", env=env, log_path=tmp_path / "worker2.log"):
        majordome_tick()  # detects the dead execution and dispatches its resumption
        wait_until(lambda: Sequence.objects.get(pk=sequence.pk).status == "completed", timeout_s=90,
                   what="sequence completed after resumption")
    images = list(Image.objects.filter(sequence=sequence))
    assert len(images) == 5
    assert len({(i.plan_id, i.index_in_plan) for i in images}) == 5
    for key, (pk, path) in first_images.items():
        again = Image.objects.get(plan_id=key[0], index_in_plan=key[1])
        assert (again.pk, again.file_path) == (pk, path)  # not redone
    assert Request.objects.get(pk=request.pk).status == "completed"
