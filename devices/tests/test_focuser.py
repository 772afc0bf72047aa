"""The simulated focuser blurs the simulated camera's stars: a V-curve over focuser positions finds
the best focus the simulator says it has, and that best focus follows the temperature."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

import numpy as np
import pytest
import sep
from astropy.io import fits

from devices import coords
from devices.observatory import connect
from devices.simulators import control
from devices.testing import running_simulators


@pytest.fixture(scope="module")
def sim():
    with running_simulators(speed=20.0) as (host, port, _pid):
        obs = connect(host, port, timeout_s=10)
        # a high field with enough stars, shutter open, a wide filter
        lst = coords.local_sidereal_time_deg(datetime.now(UTC), obs.site.longitude_deg)
        obs.mount.unpark()
        obs.mount.slew_to(ra_deg=(lst - 10.0) % 360.0, dec_deg=50.0, timeout_s=60)
        obs.dome.open_shutter(timeout_s=30)
        obs.filter_wheel.select("Clear")
        yield host, port, obs
        obs.close()


def star_fwhm_px(fits_bytes: bytes) -> float:
    """Median FWHM of the 40 brightest unsaturated stars: twice their half-light radius."""
    with fits.open(io.BytesIO(fits_bytes)) as hdul:
        image = hdul[0].data.astype(np.float64)
    background = sep.Background(image)
    data = image - background
    objects = sep.extract(data, 5.0, err=background.globalrms, minarea=5)
    good = objects[(objects["flag"] == 0) & (objects["peak"] < 40000)]
    good = good[np.argsort(good["flux"])[::-1][:40]]
    assert len(good) >= 10, f"only {len(good)} measurable stars"
    radius, _ = sep.flux_radius(data, good["x"], good["y"], np.full(len(good), 25.0), 0.5, subpix=5)
    return 2.0 * float(np.median(radius))


def fwhm_at(obs, position: int) -> float:
    obs.focuser.move_to(position, timeout_s=30)
    return star_fwhm_px(obs.camera.expose(duration_s=2.0))


def test_stars_are_sharpest_at_best_focus_and_a_v_curve_finds_it(sim):
    host, port, obs = sim
    best = control.best_focus(host, port)
    assert obs.focuser.state().max_position == 100_000
    offsets = (-800, -400, 0, 400, 800)
    positions = [int(round(best)) + d for d in offsets]
    fwhm = [fwhm_at(obs, p) for p in positions]
    at_best = fwhm[offsets.index(0)]
    assert at_best < 3.0  # 2" seeing at 1"/px
    assert min(fwhm[0], fwhm[-1]) > 2.0 * at_best  # 800 steps off: ~8"
    assert fwhm[1] > at_best and fwhm[3] > at_best
    # V-curve: FWHM^2 is a parabola in the position; its vertex is the best focus
    a, b, _ = np.polyfit(np.array(positions, dtype=float), np.square(fwhm), 2)
    vertex = -b / (2.0 * a)
    assert vertex == pytest.approx(best, abs=60.0)
    assert obs.focuser.position() == positions[-1]


def test_best_focus_follows_the_temperature(sim):
    host, port, obs = sim
    focuser = obs.focuser
    before_c = focuser.temperature_c()
    best_before = control.best_focus(host, port)
    control.set_focus(host, port, temperature_c=before_c + 5.0)
    best_after = control.best_focus(host, port)
    # the default model: -40 steps per degree (the tube contracts as it cools)
    assert best_after - best_before == pytest.approx(-200.0, abs=2.0)
    deadline = time.monotonic() + 5.0
    while abs((focuser.temperature_c() or 0.0) - (before_c + 5.0)) > 0.05 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert focuser.temperature_c() == pytest.approx(before_c + 5.0, abs=0.05)
    # frames where the focus was are now blurred by 2"; refocusing sharpens them again
    fwhm_old_best = fwhm_at(obs, int(round(best_before)))
    fwhm_new_best = fwhm_at(obs, int(round(best_after)))
    assert fwhm_new_best < 0.85 * fwhm_old_best
    with fits.open(io.BytesIO(obs.camera.expose(duration_s=0.2))) as hdul:
        header = hdul[0].header
    assert header["FOCUSPOS"] == int(round(best_after))
    assert header["FOCUSTEM"] == pytest.approx(before_c + 5.0, abs=0.05)
