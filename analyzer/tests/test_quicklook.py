"""The quick-look PNG shown on the request, image and alert pages."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from analyzer.afterglow import BurstRegion
from analyzer.calibration import load_fits
from analyzer.pipeline import analyze_image_with_quicklook
from analyzer.quicklook import render_png
from analyzer.tests.conftest import NIGHT_UTC, at, empty_sky_position, render_fits
from devices.sky import Transient


def _decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_png_fits_in_max_px_and_shows_stars_over_the_sky(light_r_fits):
    data, _ = load_fits(light_r_fits)
    image = _decode(render_png(data, max_px=1024))
    assert image.format == "PNG" and image.size == (640, 512)  # 2x2 blocks, aspect kept
    pixels = np.asarray(image)
    # zscale: the sky sits mid-grey (noise visible), stars saturate the display.
    assert 40 < np.median(pixels) < 200
    assert (pixels == 255).sum() > 200
    assert np.asarray(_decode(render_png(data, max_px=300))).shape[1] <= 300


def test_north_is_up_numpy_row_zero_is_at_the_bottom():
    data = np.random.default_rng(1).normal(100.0, 5.0, (200, 300)).astype(np.float32)
    data[5:9, 40:44] = 5000.0  # a star near numpy row 0, i.e. near FITS row 1 (south)
    pixels = np.asarray(_decode(render_png(data)))
    rows, cols = np.nonzero(pixels == 255)  # the star, plus a few noise peaks zscale also clips
    assert 190 <= np.median(rows) <= 195 and 39 <= np.median(cols) <= 44


def test_marks_are_drawn_in_colour_where_asked():
    data = np.random.default_rng(0).normal(100.0, 5.0, (200, 300)).astype(np.float32)
    plain = np.asarray(_decode(render_png(data)).convert("RGB")).astype(int)
    marked = np.asarray(_decode(render_png(data, marks=[(150.0, 50.0, "#1")])).convert("RGB")).astype(int)
    changed = np.argwhere(np.any(plain != marked, axis=2))
    assert len(changed) > 20
    red = marked[..., 0] - marked[..., 1]
    assert (red > 100).sum() > 20
    # The circle is around (x=150, y=50) in numpy coordinates, i.e. PNG row 200-1-50 = 149.
    rows, cols = changed[:, 0], changed[:, 1]
    assert abs(np.median(cols) - 150) < 15 and abs(np.median(rows) - 149) < 15


def test_a_constant_or_nan_image_still_renders():
    assert _decode(render_png(np.full((50, 60), 7.0, dtype=np.float32))).size == (60, 50)
    data = np.ones((50, 60), dtype=np.float32)
    data[10:20] = np.nan
    assert _decode(render_png(data)).size == (60, 50)


def test_quicklook_of_an_alert_image_circles_the_candidate(masters):
    ra, dec = empty_sky_position(150.0, 30.0)
    transient = Transient(ra_deg=ra, dec_deg=dec, mag0=15.0, t0_utc=NIGHT_UTC)
    content = render_fits(when_utc=at(300), seed=80, transients=(transient,))
    result, png = analyze_image_with_quicklook(content, masters=masters,
                                               burst=BurstRegion(ra, dec, 0.05, NIGHT_UTC))
    assert result["n_candidates"] >= 1 and png is not None
    pixels = np.asarray(_decode(png).convert("RGB")).astype(int)
    x, y = result["candidates"][0]["x"] / 2, 511 - result["candidates"][0]["y"] / 2
    window = pixels[int(y) - 15 : int(y) + 16, int(x) - 15 : int(x) + 16]
    assert ((window[..., 0] - window[..., 1]) > 100).sum() > 10
    failed, no_png = analyze_image_with_quicklook(b"not fits")
    assert failed["status"] == "failed" and no_png is None
