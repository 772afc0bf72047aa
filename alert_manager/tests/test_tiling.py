"""alert_manager.tiling: sky maps (LVK multi-order, flat HEALPix, error circles) -> telescope tiles. No database.

Coverage is checked independently of the module: the map is decoded here from the FITS table, resampled
finely, and each pixel centre is tested against each tile with astropy.wcs's own gnomonic (TAN)
projection; circles are checked with points drawn from the circle's distribution.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from alert_manager import tiling
from alert_manager.tiling import FieldGrid, SkyMap, SkyMapRejected, Tile, TilePlan

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "gcn-kafka"
CALERN = (43.75, 6.92, 1270.0)  # TAROT Calern
TAROT_FOV = 1.86
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------
def _message(name: str) -> dict:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"GCN Kafka corpus absent: {path} (shared data not checked out)")
    return json.loads(path.read_bytes())


def _lvk_fits(name: str, key: str = "skymap") -> bytes:
    message = _message(name)
    if key == "combined_skymap":
        return base64.b64decode(message["external_coinc"]["combined_skymap"])
    return base64.b64decode(message["event"]["skymap"])


def _topic(name: str) -> str:
    index = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))
    return next(entry["topic"] for entry in index if entry["file"] == name)


# MS230518e: an MDC alert as sent (fink-mm); peak near RA 283, Dec +45.6, transiting at midnight in July.
MS230518E = "fink-mm/lvk_test_MS230518e.json"
JULY_NIGHT = (datetime(2026, 7, 1, 20, 30, tzinfo=UTC), datetime(2026, 7, 2, 3, 30, tzinfo=UTC))
# MS181101ab (user guide): peak near RA 194, Dec -18; up at night from Calern in early April.
MS181101AB = "userguide/MS181101ab-preliminary.json"
MS181101AB_EXT = "userguide/MS181101ab-ext-update.json"
APRIL_NIGHT = (datetime(2026, 4, 1, 19, 30, tzinfo=UTC), datetime(2026, 4, 2, 4, 0, tzinfo=UTC))


# ---------------------------------------------------------------------------------------------
# Independent checks
# ---------------------------------------------------------------------------------------------
def _moc_table(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, nested index, probability) read here from an LVK multi-order FITS table."""
    with fits.open(io.BytesIO(data)) as hdul:
        table = hdul[1].data
        uniq = np.asarray(table["UNIQ"], dtype=np.int64)
        density = np.asarray(table["PROBDENSITY"], dtype=np.float64)
    order = np.array([(int(u).bit_length() - 3) // 2 for u in uniq], dtype=np.int64)
    ipix = uniq - 4 * 4**order
    return order, ipix, density * 4 * math.pi / (12 * 4.0**order)


def _inside_any_tile(tiles: list[Tile], ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Whether each direction falls in at least one tile: astropy.wcs TAN projection at each tile centre."""
    inside = np.zeros(ra_deg.shape, dtype=bool)
    for tile in tiles:
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [tile.ra_deg, tile.dec_deg]
        wcs.wcs.crpix = [1.0, 1.0]  # 1-based: pixel 0 (origin 0 below) at the tile centre
        wcs.wcs.cdelt = [1.0, 1.0]
        near = np.degrees(np.arccos(np.clip(
            np.sin(np.radians(dec_deg)) * math.sin(math.radians(tile.dec_deg))
            + np.cos(np.radians(dec_deg)) * math.cos(math.radians(tile.dec_deg))
            * np.cos(np.radians(ra_deg - tile.ra_deg)), -1, 1))) < 60.0
        x, y = wcs.wcs_world2pix(ra_deg[near], dec_deg[near], 0)
        half_w = math.degrees(math.tan(math.radians(tile.fov_width_deg) / 2))
        half_h = math.degrees(math.tan(math.radians(tile.fov_height_deg) / 2))
        hit = (np.abs(x) <= half_w) & (np.abs(y) <= half_h)
        inside[np.flatnonzero(near)[hit]] = True
    return inside


def _covered_by_tiles(data: bytes, tiles: list[Tile], order: int = 9) -> float:
    """Probability of the map's pixels (resampled at ``order``) whose centres fall in any tile."""
    orders, ipix, prob = _moc_table(data)
    ra, dec = tiling.nest2ang(orders, ipix)
    reach = max(t.fov_width_deg for t in tiles) * 1.5 + 4.0  # half-diagonal + the coarsest pixels
    centres = np.array([[t.ra_deg, t.dec_deg] for t in tiles])
    near = np.zeros(ra.size, dtype=bool)
    for c_ra, c_dec in centres:
        near |= np.degrees(tiling._angle_rad(math.radians(c_ra), math.radians(c_dec), ra, dec)) < reach
    total = 0.0
    for o in np.unique(orders[near]):
        sel = near & (orders == o)
        if o >= order:
            r, d = np.degrees(ra[sel]), np.degrees(dec[sel])
            total += float(prob[sel][_inside_any_tile(tiles, r, d)].sum())
            continue
        n = 4 ** (order - o)
        children = (ipix[sel][:, None] * n + np.arange(n)).ravel()
        child_prob = np.repeat(prob[sel] / n, n)
        r, d = tiling.nest2ang(order, children)
        total += float(child_prob[_inside_any_tile(tiles, np.degrees(r), np.degrees(d))].sum())
    return total


def _plan(skymap: SkyMap | None = None, **kwargs) -> TilePlan:
    defaults = dict(fov_width_deg=TAROT_FOV, fov_height_deg=TAROT_FOV, site=CALERN, start_utc=JULY_NIGHT[0],
                    end_utc=JULY_NIGHT[1], min_altitude_deg=25.0)
    defaults.update(kwargs)
    return tiling.plan_tiles(skymap=skymap, **defaults)


def _check_ranked(plan: TilePlan, min_altitude_deg: float = 25.0) -> None:
    indices = [t.index for t in plan]
    assert len(set(indices)) == len(indices), "a field appears twice"
    assert [t.rank for t in plan] == list(range(1, len(plan) + 1))
    scores = [t.score for t in plan]
    assert scores == sorted(scores, reverse=True), "not most probable (weighted) first"
    cumulative = [t.cumulative_probability for t in plan]
    assert cumulative == sorted(cumulative)
    for tile in plan:
        assert 0.0 < tile.score <= tile.probability <= 1.0
        assert tile.observable_s > 0 and 0 < tile.observable_fraction <= 1.0
        assert tile.observable_from_utc <= tile.best_utc <= tile.observable_until_utc
        assert tile.best_altitude_deg >= min_altitude_deg - 1e-9 and tile.airmass >= 1.0


# ---------------------------------------------------------------------------------------------
# HEALPix
# ---------------------------------------------------------------------------------------------
def test_healpix_known_centres_and_round_trips():
    ra, dec = tiling.nest2ang(0, np.arange(12))
    # base pixels: north row at Dec asin(2/3), equator row at 0, south row at -asin(2/3)
    assert np.allclose(np.degrees(dec), [41.8103149] * 4 + [0.0] * 4 + [-41.8103149] * 4)
    assert np.allclose(np.degrees(ra), [45, 135, 225, 315, 0, 90, 180, 270, 45, 135, 225, 315])
    rra, rdec = tiling.ring2ang(0, np.arange(12))
    assert np.allclose(np.degrees(rdec), np.degrees(dec)) and np.allclose(np.degrees(rra), np.degrees(ra))
    rng = np.random.default_rng(7)
    for order in (1, 3, 6, 11, 18, 29):
        npix = 12 * 4**order
        pix = rng.integers(0, npix, 5000)
        assert np.array_equal(tiling.ang2nest(order, *tiling.nest2ang(order, pix)), pix)
    # RING and NESTED: the same set of centres
    for order in (2, 5):
        n = np.stack(tiling.nest2ang(order, np.arange(12 * 4**order)), axis=1)
        r = np.stack(tiling.ring2ang(order, np.arange(12 * 4**order)), axis=1)
        key = lambda a: np.round(a, 9)[np.lexsort(np.round(a, 9).T)]  # noqa: E731
        assert np.allclose(key(n), key(r))
        assert np.array_equal(np.sort(tiling.ang2nest(order, r[:, 0], r[:, 1])), np.arange(12 * 4**order))


@pytest.mark.parametrize("fov", [0.35, TAROT_FOV, 4.0, (1.0, 3.0)])
def test_field_grid_covers_the_whole_sky(fov):
    width, height = fov if isinstance(fov, tuple) else (fov, fov)
    grid = FieldGrid(width, height)
    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 2 * np.pi, 20000)
    dec = np.arcsin(rng.uniform(-1, 1, 20000))
    # and the caps, where fields crowd
    ra = np.concatenate([ra, rng.uniform(0, 2 * np.pi, 2000)])
    dec = np.concatenate([dec, np.radians(rng.uniform(85, 90, 1000)), np.radians(rng.uniform(-90, -85, 1000))])
    points, fields = grid.pairs(ra, dec)
    assert np.array_equal(np.unique(points), np.arange(ra.size)), "a direction falls in no field"
    # fields overlap only slightly: a direction is in a few fields, not many
    assert np.bincount(points).mean() < 2.0
    c_ra, c_dec = grid.centres_deg(fields)
    assert np.all(grid.contains(np.radians(c_ra), np.radians(c_dec), ra[points], dec[points]))


# ---------------------------------------------------------------------------------------------
# LVK multi-order maps from real igwn.gwalert messages
# ---------------------------------------------------------------------------------------------
def test_lvk_map_becomes_tiles_covering_the_requested_probability():
    assert _topic(MS230518E) == "igwn.gwalert"
    data = _lvk_fits(MS230518E)
    skymap = tiling.load_skymap(data)
    assert skymap.kind == "multi-order" and skymap.meta.get("OBJECT")
    assert skymap.prob.sum() == pytest.approx(1.0)
    plan = _plan(skymap, coverage=0.9)
    assert plan and plan.reason is None and plan.stopped_by == "coverage"
    _check_ranked(plan)
    assert plan.covered_probability >= 0.9
    assert plan[-1].cumulative_probability == pytest.approx(plan.covered_probability)
    assert len(plan) == 1 or plan[-2].cumulative_probability < 0.9, "kept tiles beyond the budget"
    independent = _covered_by_tiles(data, list(plan))
    assert independent >= 0.9 - 0.015
    assert independent == pytest.approx(plan.covered_probability, abs=0.02)
    # the tile probabilities, too
    for tile in plan[:3]:
        assert _covered_by_tiles(data, [tile]) == pytest.approx(tile.probability, abs=0.02)


def test_lvk_map_tiles_honour_max_tiles_and_a_small_field():
    data = _lvk_fits(MS230518E)
    skymap = tiling.load_skymap(data)
    plan = _plan(skymap, fov_width_deg=0.35, fov_height_deg=0.35, coverage=0.9, max_tiles=12)
    assert len(plan) == 12 and plan.stopped_by == "max_tiles"
    assert "max_tiles=12" in plan.reason
    _check_ranked(plan)
    assert _covered_by_tiles(data, list(plan), order=11) == pytest.approx(plan.covered_probability, abs=0.01)
    # same grid, same field: the best field of the small grid is in the best 1.86 deg field
    big = _plan(skymap, max_tiles=1)
    inside = _inside_any_tile(list(big), np.array([plan[0].ra_deg]), np.array([plan[0].dec_deg]))
    assert inside[0]


def test_wide_real_map_is_planned_fast_within_budget():
    """S230522a: a real single-detector alert, ~24,000 deg2 at 90 %."""
    data = _lvk_fits("gwtm_cron/S230522a-Preliminary_alert.json")
    skymap = tiling.load_skymap(data)
    assert skymap.credible_area_deg2(0.9) > 10000
    plan = _plan(skymap, max_tiles=30, coverage=0.9)
    assert len(plan) == 30 and plan.stopped_by == "max_tiles"
    _check_ranked(plan)
    assert _covered_by_tiles(data, list(plan)) == pytest.approx(plan.covered_probability, abs=0.01)


def test_enclosed_probability_and_ranking_of_circular_fields():
    skymap = tiling.load_skymap(_lvk_fits(MS230518E))
    ra0, dec0 = skymap.peak_deg()
    assert skymap.enclosed_probability(ra0, dec0, 60.0) > 0.99
    assert skymap.enclosed_probability(ra0 + 180.0, -dec0, 5.0) < 1e-3
    ranked = skymap.rank_fields([ra0 + 180.0, ra0 + 3.0, ra0], [-dec0, dec0, dec0], 1.0)
    assert [i for i, _ in ranked] == [2, 1, 0]
    assert ranked[0][1] > ranked[1][1] > ranked[2][1] >= 0.0


def test_replan_after_an_updated_map_leaves_observed_tiles_out():
    first = tiling.load_skymap(_lvk_fits(MS181101AB))
    updated = tiling.load_skymap(_lvk_fits(MS181101AB_EXT, "combined_skymap"))
    kwargs = dict(site=CALERN, start_utc=APRIL_NIGHT[0], end_utc=APRIL_NIGHT[1], min_altitude_deg=20.0)
    plan = tiling.plan_tiles(skymap=first, fov_width_deg=TAROT_FOV, fov_height_deg=TAROT_FOV, coverage=0.8, **kwargs)
    assert len(plan) >= 3
    observed = {plan[0].index, plan[1].index}
    again = tiling.replan_tiles(plan, observed, updated, coverage=0.8, **kwargs)
    assert again, again.reason
    assert not observed & {t.index for t in again}
    _check_ranked(again, 20.0)
    assert again.observed_probability > 0.1
    assert again[0].cumulative_probability > again.observed_probability
    assert again.covered_probability >= 0.8 or again.reason
    # the same fields keep their index and centre
    common = {t.index for t in plan} & {t.index for t in again}
    for index in common:
        old = next(t for t in plan if t.index == index)
        new = next(t for t in again if t.index == index)
        assert (old.ra_deg, old.dec_deg) == (new.ra_deg, new.dec_deg)
    done = tiling.replan_tiles(plan, observed, updated, coverage=0.05, **kwargs)  # already covered
    assert done == [] and done.stopped_by == "coverage" and done.reason is None
    with pytest.raises(ValueError, match="indices would not match"):
        tiling.replan_tiles(plan, observed, updated, fov_width_deg=1.0, fov_height_deg=1.0, **kwargs)


# ---------------------------------------------------------------------------------------------
# Flat maps (Swift BAT-GUANO style)
# ---------------------------------------------------------------------------------------------
def _flat_map_fits(nside: int = 256, ra0: float = 250.0, dec0: float = 35.0, sigma_deg: float = 1.5,
                   ordering: str = "RING", column: str = "PROB", gzipped: bool = False) -> tuple[bytes, np.ndarray]:
    order = nside.bit_length() - 1
    pix = np.arange(12 * nside * nside)
    ra, dec = (tiling.ring2ang if ordering == "RING" else tiling.nest2ang)(order, pix)
    theta = tiling._angle_rad(math.radians(ra0), math.radians(dec0), ra, dec)
    prob = np.exp(-0.5 * (theta / math.radians(sigma_deg)) ** 2)
    prob[theta > math.radians(6 * sigma_deg)] = 0.0
    prob /= prob.sum()
    hdu = fits.BinTableHDU.from_columns([fits.Column(name=column, format="D", array=prob)])
    hdu.header.update(PIXTYPE="HEALPIX", ORDERING=ordering, NSIDE=nside, COORDSYS="C", INDXSCHM="IMPLICIT")
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    data = out.getvalue()
    return (gzip.compress(data) if gzipped else data), prob


def test_guano_example_map_is_a_placeholder_and_is_rejected():
    name = "gcn-schema/swift.bat.guano.loc_map.example.json"
    message = _message(name)
    assert _topic(name) == "gcn.notices.swift.bat.guano"
    with pytest.raises(SkyMapRejected) as caught:
        tiling.skymap_from_base64(message["healpix_file"])
    assert "base64" in caught.value.reason


@pytest.mark.parametrize(("ordering", "gzipped"), [("RING", True), ("NESTED", False)])
def test_flat_map_becomes_tiles_covering_the_requested_probability(ordering, gzipped):
    data, prob = _flat_map_fits(ordering=ordering, gzipped=gzipped)
    skymap = tiling.load_skymap(data)
    assert skymap.kind == f"flat-{ordering.lower()}"
    plan = _plan(skymap, coverage=0.9)
    assert plan.stopped_by == "coverage" and plan.covered_probability >= 0.9
    _check_ranked(plan)
    nside = 256
    ra, dec = (tiling.ring2ang if ordering == "RING" else tiling.nest2ang)(nside.bit_length() - 1,
                                                                          np.flatnonzero(prob))
    inside = _inside_any_tile(list(plan), np.degrees(ra), np.degrees(dec))
    independent = float(prob[prob > 0][inside].sum())
    assert independent >= 0.9 - 0.015
    assert independent == pytest.approx(plan.covered_probability, abs=0.02)


# ---------------------------------------------------------------------------------------------
# Error circles
# ---------------------------------------------------------------------------------------------
def _circle_samples(ra0: float, dec0: float, radius: float, profile: str, n: int = 40000):
    """Directions drawn from the circle's distribution (uniform in the disc, or 2-D Gaussian with R90 = radius)."""
    rng = np.random.default_rng(11)
    if profile == "uniform":
        theta = np.arccos(1 - rng.uniform(0, 1, n) * (1 - math.cos(math.radians(radius))))
    else:
        sigma = math.radians(radius) / math.sqrt(2 * math.log(10))
        theta = sigma * np.sqrt(-2 * np.log(rng.uniform(1e-12, 1, n)))
        theta = theta[theta <= 2 * math.radians(radius)]
    phi = rng.uniform(0, 2 * np.pi, theta.size)
    # rotate offsets from the pole to (ra0, dec0)
    x, y, z = np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)
    a, d = math.radians(ra0), math.radians(dec0)
    # pole -> (a, d): rotate about y by (90 - dec), then about z by ra
    cb, sb = math.cos(math.pi / 2 - d), math.sin(math.pi / 2 - d)
    x, z = cb * x + sb * z, -sb * x + cb * z
    x, y = math.cos(a) * x - math.sin(a) * y, math.sin(a) * x + math.cos(a) * y
    return np.degrees(np.arctan2(y, x)) % 360, np.degrees(np.arcsin(np.clip(z, -1, 1)))


@pytest.mark.parametrize("profile", ["gaussian", "uniform"])
def test_circle_of_2_deg_with_a_035_deg_field_covers_the_requested_probability(profile):
    circle = (283.0, 45.0, 2.0)
    plan = _plan(circle=circle, fov_width_deg=0.35, fov_height_deg=0.35, coverage=0.9, circle_profile=profile)
    assert plan.stopped_by == "coverage" and plan.covered_probability >= 0.9
    _check_ranked(plan)
    ra, dec = _circle_samples(*circle, profile)
    independent = float(np.mean(_inside_any_tile(list(plan), ra, dec)))
    assert independent >= 0.9 - 0.015
    assert independent == pytest.approx(plan.covered_probability, abs=0.02)
    if profile == "gaussian":  # the centre first
        assert math.dist((plan[0].ra_deg * math.cos(math.radians(45)), plan[0].dec_deg),
                         (283.0 * math.cos(math.radians(45)), 45.0)) < 0.35


def test_circle_map_enclosed_probability():
    skymap = SkyMap.from_circle(150.0, 30.0, 2.0, profile="uniform")
    assert skymap.enclosed_probability(150.0, 30.0, 2.5) == pytest.approx(1.0)
    expected = (1 - math.cos(math.radians(1))) / (1 - math.cos(math.radians(2)))
    assert skymap.enclosed_probability(150.0, 30.0, 1.0) == pytest.approx(expected, abs=0.02)
    gaussian = SkyMap.from_circle(150.0, 30.0, 2.0)
    assert gaussian.enclosed_probability(150.0, 30.0, 2.0) == pytest.approx(0.9, abs=0.02)


# ---------------------------------------------------------------------------------------------
# Observability
# ---------------------------------------------------------------------------------------------
def test_region_never_up_gives_no_tiles_and_says_why():
    plan = _plan(circle=(100.0, -80.0, 2.0), coverage=0.9)
    assert plan == [] and isinstance(plan, TilePlan)
    assert "never above 25 deg" in plan.reason
    # and from a +60 deg site too, on a long winter night
    plan = _plan(circle=(100.0, -80.0, 2.0), site=(60.0, 10.0, 0.0), coverage=0.9,
                 start_utc=datetime(2026, 12, 20, 16, 0, tzinfo=UTC), end_utc=datetime(2026, 12, 21, 7, 0, tzinfo=UTC))
    assert plan == [] and "never above" in plan.reason


def test_no_dark_time_gives_no_tiles_and_says_why():
    plan = _plan(circle=(283.0, 45.0, 2.0), site=(69.6, 18.9, 0.0), coverage=0.9)  # Tromso, midsummer
    assert plan == [] and "no dark time" in plan.reason


def test_only_observable_tiles_are_kept_and_coverage_shortfall_is_explained():
    # A map across the altitude limit: south of Dec -21.25 nothing rises above 25 deg at Calern.
    skymap = SkyMap.from_circle(283.0, -20.0, 10.0, profile="uniform")
    plan = _plan(skymap, coverage=0.9)
    assert plan and plan.stopped_by == "exhausted"
    assert "not reachable" in plan.reason
    assert all(t.dec_deg >= 43.75 - 90 + 25 for t in plan)  # never a field that stays low
    assert min(t.dec_deg for t in plan) < -15.0  # but down to the limit
    _check_ranked(plan)


# ---------------------------------------------------------------------------------------------
# Rejected maps
# ---------------------------------------------------------------------------------------------
def _reject(data: bytes, **kwargs) -> str:
    with pytest.raises(SkyMapRejected) as caught:
        tiling.load_skymap(data, **kwargs)
    assert isinstance(caught.value, ValueError)
    assert caught.value.reason and caught.value.reason == str(caught.value)
    return caught.value.reason


def _moc_fits(uniq: np.ndarray, density: np.ndarray) -> bytes:
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="UNIQ", format="K", array=uniq),
                                         fits.Column(name="PROBDENSITY", format="D", array=density)])
    hdu.header.update(PIXTYPE="HEALPIX", ORDERING="NUNIQ", COORDSYS="C", MOC=True)
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    return out.getvalue()


def test_corrupt_maps_are_rejected_with_a_reason():
    data = _lvk_fits(MS230518E)
    assert "not a FITS file" in _reject(b"\x00" * 5000)
    assert "not a FITS file" in _reject(b'{"event": null}')
    assert "truncated" in _reject(data[: len(data) - 1000])
    assert _reject(data[:2880] + b"\x00" * 2880)  # header of the primary, then garbage
    assert "gzip" in _reject(b"\x1f\x8b" + b"garbage" * 100)
    assert "truncated gzip" in _reject(gzip.compress(data)[:50000])
    # mangled bytes anywhere: a map or a rejection, never another exception
    rng = np.random.default_rng(5)
    for _ in range(40):
        mangled = bytearray(data)
        for position in rng.integers(0, 2880 * 3, 8).tolist() + rng.integers(0, len(data), 8).tolist():
            mangled[position] = int(rng.integers(0, 256))
        try:
            tiling.load_skymap(bytes(mangled))
        except SkyMapRejected as exc:
            assert exc.reason


def test_huge_maps_are_rejected():
    data = _lvk_fits(MS230518E)
    assert "larger than the limit" in _reject(data, max_bytes=100_000)
    assert "pixels is larger than the limit" in _reject(data, max_pixels=10_000)
    flat, _ = _flat_map_fits(nside=64)
    assert "pixels is larger than the limit" in _reject(flat, max_pixels=12 * 32 * 32)
    bomb = gzip.compress(b"\x00" * 3_000_000)
    assert "decompressed" in _reject(bomb, max_bytes=1_000_000)


def test_fits_that_are_not_healpix_maps_are_rejected():
    image = io.BytesIO()
    fits.PrimaryHDU(np.zeros((64, 64), dtype=np.float32)).writeto(image)
    assert "not a HEALPix map" in _reject(image.getvalue())
    table = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="PROB", format="D", array=np.full(12, 1 / 12))])]).writeto(table)
    assert "PIXTYPE" in _reject(table.getvalue())
    flat, _ = _flat_map_fits(nside=16)
    with fits.open(io.BytesIO(flat)) as hdul:
        hdul[1] = fits.BinTableHDU.from_columns(
            [fits.Column(name="PROB", format="D", array=np.full(1000, 1e-3))], header=hdul[1].header)
        hdul[1].header["NSIDE"] = 16
        wrong = io.BytesIO()
        hdul.writeto(wrong)
    assert "12 * NSIDE**2" in _reject(wrong.getvalue())
    moc = _moc_fits(4 * 4**1 + np.arange(48), np.full(48, 1 / (4 * math.pi)))
    with fits.open(io.BytesIO(moc)) as hdul:
        hdul[1] = fits.BinTableHDU.from_columns(
            [fits.Column(name="PROBDENSITY", format="D", array=np.full(48, 1 / (4 * math.pi)))], header=hdul[1].header)
        no_uniq = io.BytesIO()
        hdul.writeto(no_uniq)
    assert "without a UNIQ column" in _reject(no_uniq.getvalue())
    galactic, _ = _flat_map_fits(nside=16)
    with fits.open(io.BytesIO(galactic)) as hdul:
        hdul[1].header["COORDSYS"] = "G"
        out = io.BytesIO()
        hdul.writeto(out)
    assert "only equatorial" in _reject(out.getvalue())


def test_bad_probabilities_are_rejected():
    uniq = 4 * 4**2 + np.arange(12 * 16)  # order 2, whole sky
    density = np.full(uniq.size, 1.0 / (4 * math.pi))
    assert tiling.load_skymap(_moc_fits(uniq, density)).prob.size == uniq.size
    nan = density.copy()
    nan[7] = np.nan
    assert "NaN" in _reject(_moc_fits(uniq, nan))
    negative = density.copy()
    negative[3] = -negative[3]
    assert "negative" in _reject(_moc_fits(uniq, negative))
    assert "total probability is 0.5" in _reject(_moc_fits(uniq, density / 2))
    overlapping = np.concatenate([uniq, [4 * 4**3 + 5]])
    assert "overlapping" in _reject(_moc_fits(overlapping, np.append(density, 0.0)))
    flat, prob = _flat_map_fits(nside=16)
    with fits.open(io.BytesIO(flat)) as hdul:
        values = np.array(hdul[1].data["PROB"])
        values[10] = np.nan
        hdul[1].data["PROB"] = values
        out = io.BytesIO()
        hdul.writeto(out)
    assert "NaN" in _reject(out.getvalue())


def test_no_tiles_from_a_bad_call():
    with pytest.raises(ValueError, match="exactly one"):
        tiling.plan_tiles(fov_width_deg=1, fov_height_deg=1, site=CALERN, start_utc=JULY_NIGHT[0],
                          end_utc=JULY_NIGHT[1], min_altitude_deg=20)
    with pytest.raises(ValueError, match="aware"):
        _plan(circle=(1, 2, 3), start_utc=datetime(2026, 7, 1, 20, 0))  # noqa: DTZ001 - the point of the test


# ---------------------------------------------------------------------------------------------
# Picture
# ---------------------------------------------------------------------------------------------
def test_render_tiles_png():
    from PIL import Image

    skymap = tiling.load_skymap(_lvk_fits(MS230518E))
    plan = _plan(skymap, coverage=0.9)
    observed = {plan[0].index}
    png = tiling.render_tiles_png(skymap=skymap, tiles=plan, observed=observed, title="MS230518e - TAROT")
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (900, 700)
    assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 50  # a colour map, not a blank picture
    circle_png = tiling.render_tiles_png(circle=(283.0, 45.0, 2.0), tiles=[], observed=set(), title="circle")
    assert circle_png.startswith(PNG_SIGNATURE)
