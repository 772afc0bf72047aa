"""From a localisation (HEALPix sky map or error circle) to telescope tiles (pure: numpy/astropy/erfa, no Django).

* :func:`load_skymap` reads a HEALPix map from FITS bytes, strictly: LVK multi-order maps (``UNIQ`` +
  ``PROBDENSITY``) and flat maps (RING or NESTED, a ``PROB`` column), gzip-compressed or not. Anything
  suspicious raises :class:`SkyMapRejected` with a human-readable ``reason``; nothing else escapes.
* :func:`plan_tiles` ranks the fields of a *fixed* sky grid (declination bands of fields that overlap
  slightly, the same grid for every alert with the same field size, so a field keeps its index between
  plans) by the probability they enclose, weighted by how long they are observable from the site in the
  window (dark sky, above the altitude limit), and keeps the observable ones, most probable first, until
  the budget (``max_tiles`` and/or ``coverage``) is reached.
* :func:`replan_tiles` does it again for an updated map, leaving out the tiles already observed.
* :func:`render_tiles_png` draws the map around the localisation with the tiles (Pillow only).

How probabilities are computed: the map's 99.9 % credible region is resampled at one HEALPix order
fine enough for the field (pixels a fifth of the field side or smaller); for very wide maps, within a
budget of pixels, the order drops to pixels of 2.5 per field side and then the region is cut (a lower
credible level). A field encloses the pixels whose centres fall in its footprint, a gnomonic
(tangent-plane) rectangle ``fov_width_deg`` x ``fov_height_deg`` aligned with RA/Dec at its centre.
Cumulative probabilities are those of the union of the tiles, so overlaps are not counted twice. An
error circle becomes a map first (:meth:`SkyMap.from_circle`: Gaussian with the radius as 90 %
containment, or uniform).

The HEALPix pixel <-> direction functions are ours (the formulas of the HEALPix C++ library, Gorski et
al. 2005): ``nest2ang``, ``ring2ang``, ``ang2nest``; the tests compare them with known values.

Observability is computed with erfa only: Greenwich apparent sidereal time and the precession-nutation
matrix of the middle of the window (IAU 2006/2000A), the Sun from erfa's Earth ephemeris (``epv00``);
altitudes are geometric (no refraction, aberration or polar motion: errors < 1'), airmass is sec(z).
"""

from __future__ import annotations

import base64
import io
import math
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

__all__ = [
    "FieldGrid",
    "SkyMap",
    "SkyMapRejected",
    "Tile",
    "TilePlan",
    "ang2nest",
    "load_skymap",
    "nest2ang",
    "plan_tiles",
    "render_tiles_png",
    "replan_tiles",
    "ring2ang",
    "skymap_from_base64",
]

MAX_ORDER = 29  # HEALPix orders that fit NUNIQ in int64
DEFAULT_MAX_BYTES = 128 * 1024 * 1024
DEFAULT_MAX_PIXELS = 12 * 4**10  # a flat NSIDE=1024 map
PROBABILITY_TOLERANCE = 0.02  # |total - 1| accepted before renormalisation
REGION_LEVEL = 0.999  # credible level of the region that is resampled and tiled
REGION_MAX_PIXELS = 150_000  # budget of resampled pixels (sets the resolution of wide maps)
PIXELS_PER_FIELD = 5.0  # resampled pixel side <= min(field side) / this ...
MIN_PIXELS_PER_FIELD = 2.5  # ... or, for wide maps (pixel budget), this: then the region is cut instead
DEFAULT_OVERLAP = 0.1  # fraction of a field shared with its neighbours in the grid
_MAX_MATRIX_ELEMENTS = 4_000_000  # fields x time samples per block (float64: 32 MB)
TT_MINUS_UTC_S = 69.184  # 32.184 + 37 leap seconds (since 2017); 1 s off changes nothing here

_FITS_MAGIC = b"SIMPLE  ="
_GZIP_MAGIC = b"\x1f\x8b"
_PROB_COLUMNS = ("PROB", "PROBABILITY", "PROBDENSITY")


class SkyMapRejected(ValueError):  # noqa: N818 - the name says what happened to the map
    """A sky map that cannot be used; ``reason`` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# =============================================================================================
# HEALPix (nested and ring schemes), vectorised
# =============================================================================================
_JRLL = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4], dtype=np.int64)
_JPLL = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.int64)


def _compact_bits(v: np.ndarray) -> np.ndarray:
    """Keep the even bits of ``v`` (uint64), packed: the inverse of :func:`_spread_bits`."""
    v = v & np.uint64(0x5555555555555555)
    v = (v | (v >> np.uint64(1))) & np.uint64(0x3333333333333333)
    v = (v | (v >> np.uint64(2))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
    v = (v | (v >> np.uint64(16))) & np.uint64(0x00000000FFFFFFFF)
    return v


def _spread_bits(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & np.uint64(0x00000000FFFFFFFF)
    v = (v | (v << np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v << np.uint64(2))) & np.uint64(0x3333333333333333)
    v = (v | (v << np.uint64(1))) & np.uint64(0x5555555555555555)
    return v


def nest2ang(order: int | np.ndarray, ipix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (ra, dec in radians) of NESTED pixels ``ipix`` at ``order`` (scalar or per pixel)."""
    ipix = np.asarray(ipix, dtype=np.int64)
    order = np.broadcast_to(np.asarray(order, dtype=np.int64), ipix.shape)
    nside = np.left_shift(np.int64(1), order)
    face = np.right_shift(ipix, 2 * order)
    within = (ipix - np.left_shift(face, 2 * order)).astype(np.uint64)
    ix = _compact_bits(within).astype(np.int64)
    iy = _compact_bits(within >> np.uint64(1)).astype(np.int64)
    jr = _JRLL[face] * nside - ix - iy - 1
    npface = (nside * nside).astype(np.float64)
    north, south = jr < nside, jr > 3 * nside
    polar = north | south
    nr = np.where(north, jr, np.where(south, 4 * nside - jr, nside))
    # Polar caps: 1 - |z| = nr^2 / (3 npface); dec from an asin of that, precise near the poles.
    one_minus_za = (nr.astype(np.float64) ** 2) / (3.0 * npface)
    colat_polar = 2.0 * np.arcsin(np.sqrt(np.clip(one_minus_za / 2.0, 0.0, 1.0)))
    z_eq = (2 * nside - jr).astype(np.float64) * 2.0 / (3.0 * nside)
    dec = np.where(polar, np.where(north, 1.0, -1.0) * (np.pi / 2 - colat_polar),
                   np.arcsin(np.clip(z_eq, -1.0, 1.0)))
    tmp = _JPLL[face] * nr + ix - iy
    tmp = np.where(tmp < 0, tmp + 8 * nr, tmp)
    ra = np.mod((np.pi / 4) * tmp / nr, 2 * np.pi)
    return ra, dec


def _isqrt(v: np.ndarray) -> np.ndarray:
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)
    return np.where((r + 1) * (r + 1) <= v, r + 1, r)


def ring2ang(order: int, ipix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (ra, dec in radians) of RING pixels ``ipix`` of a map of ``order`` (NSIDE = 2**order)."""
    ipix = np.asarray(ipix, dtype=np.int64)
    nside = 1 << int(order)
    npix = 12 * nside * nside
    ncap = 2 * nside * (nside - 1)
    fact2 = 4.0 / npix
    ra = np.empty(ipix.shape)
    dec = np.empty(ipix.shape)

    north = ipix < ncap
    if north.any():
        p = ipix[north]
        iring = (1 + _isqrt(1 + 2 * p)) >> 1
        iphi = (p + 1) - 2 * iring * (iring - 1)
        tmp = iring.astype(np.float64) ** 2 * fact2
        dec[north] = np.pi / 2 - 2.0 * np.arcsin(np.sqrt(tmp / 2.0))
        ra[north] = (iphi - 0.5) * (np.pi / 2) / iring
    south = ipix >= npix - ncap
    if south.any():
        p = npix - ipix[south]
        iring = (1 + _isqrt(2 * p - 1)) >> 1
        iphi = 4 * iring + 1 - (p - 2 * iring * (iring - 1))
        tmp = iring.astype(np.float64) ** 2 * fact2
        dec[south] = -(np.pi / 2 - 2.0 * np.arcsin(np.sqrt(tmp / 2.0)))
        ra[south] = (iphi - 0.5) * (np.pi / 2) / iring
    equator = ~(north | south)
    if equator.any():
        ip = ipix[equator] - ncap
        tmp = ip // (4 * nside)
        iring = tmp + nside
        iphi = ip - 4 * nside * tmp + 1
        fodd = np.where((iring + nside) & 1, 1.0, 0.5)
        dec[equator] = np.arcsin((2 * nside - iring) * 2.0 / (3.0 * nside))
        ra[equator] = (iphi - fodd) * np.pi / (2.0 * nside)
    return np.mod(ra, 2 * np.pi), dec


def ang2nest(order: int, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """NESTED pixel indices at ``order`` of directions (ra, dec in radians)."""
    order = int(order)
    nside = 1 << order
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    z = np.sin(dec)
    za = np.abs(z)
    tt = np.mod(ra / (np.pi / 2), 4.0)
    tt = np.where(tt >= 4.0, 0.0, tt)
    face = np.empty(z.shape, dtype=np.int64)
    ix = np.empty(z.shape, dtype=np.int64)
    iy = np.empty(z.shape, dtype=np.int64)

    eq = za <= 2.0 / 3.0
    if eq.any():
        temp1 = nside * (0.5 + tt[eq])
        temp2 = nside * (z[eq] * 0.75)
        jp = (temp1 - temp2).astype(np.int64)
        jm = (temp1 + temp2).astype(np.int64)
        ifp, ifm = jp >> order, jm >> order
        face[eq] = np.where(ifp == ifm, ifp | 4, np.where(ifp < ifm, ifp, ifm + 8))
        ix[eq] = jm & (nside - 1)
        iy[eq] = nside - (jp & (nside - 1)) - 1
    pol = ~eq
    if pol.any():
        ntt = np.minimum(3, tt[pol].astype(np.int64))
        tp = tt[pol] - ntt
        # nside * sqrt(3 (1 - |z|)), with 1 - |z| = 2 sin^2(colat / 2) computed without cancellation
        colat = np.pi / 2 - np.abs(dec[pol])
        tmp = nside * np.sqrt(6.0) * np.sin(colat / 2.0)
        jp = np.minimum((tp * tmp).astype(np.int64), nside - 1)
        jm = np.minimum(((1.0 - tp) * tmp).astype(np.int64), nside - 1)
        north = z[pol] >= 0
        face[pol] = np.where(north, ntt, ntt + 8)
        ix[pol] = np.where(north, nside - jm - 1, jp)
        iy[pol] = np.where(north, nside - jp - 1, jm)
    return (face << (2 * order)) + (_spread_bits(ix) | (_spread_bits(iy) << np.uint64(1))).astype(np.int64)


def pixel_area_sr(order: int | np.ndarray) -> np.ndarray | float:
    return 4.0 * np.pi / (12.0 * 4.0 ** np.asarray(order, dtype=np.float64))


def pixel_side_deg(order: int) -> float:
    return math.degrees(math.sqrt(4.0 * math.pi / (12.0 * 4.0**order)))


def _field_order(field_side_deg: float, pixels_per_side: float) -> int:
    """The lowest HEALPix order whose pixels are at most ``field_side_deg / pixels_per_side`` (16 at most)."""
    order = 0
    while order < 16 and pixel_side_deg(order) > field_side_deg / pixels_per_side:
        order += 1
    return order


def _max_pixel_radius_rad(order: int | np.ndarray) -> np.ndarray:
    """A safe upper bound of the angle from a pixel's centre to its farthest corner."""
    return 1.5 * np.sqrt(pixel_area_sr(order))


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def _angle_rad(ra1, dec1, ra2, dec2) -> np.ndarray:  # noqa: ANN001
    """Great-circle distance (haversine: precise at small angles)."""
    s = np.sin((dec2 - dec1) / 2.0) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2.0) ** 2
    return 2.0 * np.arcsin(np.sqrt(np.clip(s, 0.0, 1.0)))


def _refine(order: np.ndarray, ipix: np.ndarray, prob: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels at exactly ``target`` order: coarser ones split (probability shared), finer ones merged."""
    coarse = order <= target
    n_children = 4 ** (target - order[coarse].astype(np.int64))
    first = ipix[coarse] * n_children
    counts = n_children
    parents = np.repeat(np.arange(counts.size), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    out_ipix = np.repeat(first, counts) + (np.arange(parents.size) - start)
    out_prob = np.repeat(prob[coarse] / n_children, counts)
    fine = ~coarse
    if fine.any():
        merged = ipix[fine] >> (2 * (order[fine].astype(np.int64) - target))
        out_ipix = np.concatenate([out_ipix, merged])
        out_prob = np.concatenate([out_prob, prob[fine]])
        out_ipix, inverse = np.unique(out_ipix, return_inverse=True)
        out_prob = np.bincount(inverse, weights=out_prob, minlength=out_ipix.size)
    return out_ipix, out_prob


# =============================================================================================
# Sky maps
# =============================================================================================
@dataclass(frozen=True)
class _Region:
    order: int
    ipix: np.ndarray
    prob: np.ndarray
    ra: np.ndarray  # radians
    dec: np.ndarray
    level: float  # probability held by the region (the rest, left out, is the tail of the map)


class SkyMap:
    """A normalised HEALPix probability map, stored as multi-order pixels (order, nested index, probability).

    Only pixels with probability > 0 are kept. Build one with :func:`load_skymap`, :meth:`from_circle`
    or :meth:`from_pixels`.
    """

    def __init__(self, order: np.ndarray, ipix: np.ndarray, prob: np.ndarray, *, kind: str, meta: dict | None = None):
        keep = prob > 0
        self.order = np.asarray(order, dtype=np.int64)[keep]
        self.ipix = np.asarray(ipix, dtype=np.int64)[keep]
        self.prob = np.asarray(prob, dtype=np.float64)[keep]
        if not self.prob.size or not np.isfinite(self.prob.sum()):
            raise ValueError("a sky map needs finite probabilities, some > 0")
        self.prob = self.prob / self.prob.sum()
        self.kind = kind
        self.meta = dict(meta or {})
        self._regions: dict[tuple[int, float], _Region] = {}
        self._centres: tuple[np.ndarray, np.ndarray] | None = None
        self._density_index: tuple | None = None

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_pixels(cls, order: int, prob: np.ndarray, *, nested: bool = True, kind: str = "flat") -> SkyMap:
        """From a full-sky flat map of probabilities per pixel (RING or NESTED) at ``order``."""
        prob = np.asarray(prob, dtype=np.float64)
        ipix = np.arange(prob.size, dtype=np.int64)
        if not nested:
            ipix = ang2nest(order, *ring2ang(order, ipix))
        return cls(np.full(prob.size, order), ipix, prob, kind=kind)

    @classmethod
    def from_circle(cls, ra_deg: float, dec_deg: float, radius_deg: float, *, profile: str = "gaussian",
                    min_order: int = 0) -> SkyMap:
        """An error circle as a map: ``gaussian`` (radius = 90 % containment, cut at twice it) or ``uniform``.

        Pixels are a twentieth of the radius or finer (at least ``min_order``), within a pixel budget.
        """
        if not (0.0 < radius_deg <= 90.0):
            raise ValueError(f"circle radius must be in (0, 90] deg, got {radius_deg}")
        if not -90.0 <= dec_deg <= 90.0:
            raise ValueError(f"declination out of range: {dec_deg}")
        if profile not in ("gaussian", "uniform"):
            raise ValueError(f"profile must be 'gaussian' or 'uniform', got {profile!r}")
        extent = math.radians(radius_deg * (2.0 if profile == "gaussian" else 1.0))
        order = max(_field_order(radius_deg, 20.0), min(int(min_order), 16))
        disc_sr = 2 * math.pi * (1 - math.cos(min(extent, math.pi)))
        while order > 0 and disc_sr / pixel_area_sr(order) > REGION_MAX_PIXELS:
            order -= 1
        ra0, dec0 = math.radians(ra_deg), math.radians(dec_deg)
        ipix = _query_disc(order, ra0, dec0, extent)
        ra, dec = nest2ang(order, ipix)
        theta = _angle_rad(ra0, dec0, ra, dec)
        if profile == "gaussian":
            sigma = math.radians(radius_deg) / math.sqrt(2.0 * math.log(10.0))
            density = np.exp(-0.5 * (theta / sigma) ** 2) * (theta <= extent)
        else:
            density = (theta <= extent).astype(np.float64)
        if density.sum() <= 0:  # a circle smaller than a pixel: the pixel of its centre
            ipix = ang2nest(order, np.array([ra0]), np.array([dec0]))
            density = np.ones(1)
        meta = {"circle": (float(ra_deg), float(dec_deg), float(radius_deg)), "profile": profile}
        return cls(np.full(ipix.size, order), ipix, density, kind="circle", meta=meta)

    # -- queries ----------------------------------------------------------------------------
    @property
    def max_order(self) -> int:
        return int(self.order.max())

    def pixel_centres_deg(self) -> tuple[np.ndarray, np.ndarray]:
        """(ra, dec) in degrees of the stored pixels (same order as :attr:`prob`)."""
        if self._centres is None:
            ra, dec = nest2ang(self.order, self.ipix)
            self._centres = (np.degrees(ra), np.degrees(dec))
        return self._centres

    def densities(self) -> np.ndarray:
        """Probability per steradian of the stored pixels."""
        return self.prob / pixel_area_sr(self.order)

    def peak_deg(self) -> tuple[float, float]:
        ra, dec = self.pixel_centres_deg()
        k = int(np.argmax(self.densities()))
        return float(ra[k]), float(dec[k])

    def credible_area_deg2(self, level: float = 0.9) -> float:
        """Area of the smallest region holding ``level`` of the probability."""
        order_idx = np.argsort(-self.densities(), kind="stable")
        cum = np.cumsum(self.prob[order_idx])
        n = int(np.searchsorted(cum, level)) + 1
        return float(np.sum(pixel_area_sr(self.order[order_idx[:n]]))) * (180.0 / math.pi) ** 2

    def density_at(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
        """Probability per steradian at directions (0 outside the stored pixels)."""
        if self._density_index is None:
            top = self.max_order
            starts = self.ipix << (2 * (top - self.order))
            ends = (self.ipix + 1) << (2 * (top - self.order))
            sort = np.argsort(starts)
            self._density_index = (top, starts[sort], ends[sort], self.densities()[sort])
        top, starts, ends, density = self._density_index
        ra_deg, dec_deg = np.asarray(ra_deg, dtype=float), np.asarray(dec_deg, dtype=float)
        pix = ang2nest(top, np.radians(ra_deg).ravel(), np.radians(dec_deg).ravel())
        k = np.clip(np.searchsorted(starts, pix, side="right") - 1, 0, None)
        inside = (pix >= starts[k]) & (pix < ends[k])
        return np.where(inside, density[k], 0.0).reshape(ra_deg.shape)

    def region(self, target_order: int, min_order: int | None = None, level: float = REGION_LEVEL,
               max_pixels: int = REGION_MAX_PIXELS) -> _Region:
        """The ``level`` credible region resampled at one order, within ``max_pixels`` pixels.

        The order is ``target_order``, lowered down to ``min_order`` if the region would need more pixels;
        at ``min_order`` the region itself is cut (a lower credible level, see ``_Region.level``).
        """
        min_order = target_order if min_order is None else min(min_order, target_order)
        key = (target_order, min_order, float(level), int(max_pixels))
        if key in self._regions:
            return self._regions[key]
        idx = np.argsort(-self.densities(), kind="stable")
        cum = np.cumsum(self.prob[idx])
        n = min(idx.size, int(np.searchsorted(cum, level)) + 1)
        order = target_order
        while True:
            # pixels once resampled at `order` (finer pixels merge: a quarter per order, as they come in fours)
            cost = np.cumsum(4.0 ** (order - self.order[idx]))
            if cost[n - 1] <= max_pixels:
                break
            if order <= min_order:
                n = max(1, int(np.searchsorted(cost, max_pixels, side="right")))
                break
            order -= 1
        keep = np.sort(idx[:n])
        ipix, prob = _refine(self.order[keep], self.ipix[keep], self.prob[keep], order)
        ra, dec = nest2ang(order, ipix)
        region = _Region(order, ipix, prob, ra, dec, float(np.sum(self.prob[keep])))
        self._regions[key] = region
        return region

    def _region_for_radius(self, radius_deg: float) -> _Region:
        side = 2.0 * radius_deg
        return self.region(_field_order(side, PIXELS_PER_FIELD), _field_order(side, MIN_PIXELS_PER_FIELD), level=1.0)

    def enclosed_probability(self, ra_deg, dec_deg, radius_deg: float):  # noqa: ANN001, ANN201
        """Probability inside circular field(s) of ``radius_deg`` centred at (ra, dec); scalar or array."""
        from scipy.spatial import cKDTree

        scalar = np.ndim(ra_deg) == 0
        ra = np.radians(np.atleast_1d(np.asarray(ra_deg, dtype=float)))
        dec = np.radians(np.atleast_1d(np.asarray(dec_deg, dtype=float)))
        region = self._region_for_radius(radius_deg)
        tree = cKDTree(_unit(region.ra, region.dec))
        chord = 2.0 * math.sin(math.radians(radius_deg) / 2.0)
        hits = tree.query_ball_point(_unit(ra, dec), chord)
        result = np.array([float(np.sum(region.prob[h])) if h else 0.0 for h in hits])
        return float(result[0]) if scalar else result

    def rank_fields(self, ra_deg: Sequence[float], dec_deg: Sequence[float], radius_deg: float
                    ) -> list[tuple[int, float]]:
        """Candidate circular fields as (position in the input, enclosed probability), most probable first."""
        probs = np.atleast_1d(self.enclosed_probability(np.asarray(ra_deg, float), np.asarray(dec_deg, float),
                                                        radius_deg))
        order = np.lexsort((np.arange(probs.size), -probs))
        return [(int(i), float(probs[i])) for i in order]

    def __repr__(self) -> str:
        return f"<SkyMap {self.kind} {self.prob.size} pixels, orders {self.order.min()}-{self.max_order}>"


def _query_disc(order: int, ra0: float, dec0: float, radius_rad: float) -> np.ndarray:
    """NESTED pixels at ``order`` whose centres may lie within ``radius_rad`` (a superset: refined top-down)."""
    ipix = np.arange(12, dtype=np.int64)
    for o in range(order + 1):
        if o > 0:
            ipix = (ipix[:, None] * 4 + np.arange(4)).ravel()
        ra, dec = nest2ang(o, ipix)
        margin = _max_pixel_radius_rad(o) if o < order else 0.0
        ipix = ipix[_angle_rad(ra0, dec0, ra, dec) <= radius_rad + margin]
    return ipix


# =============================================================================================
# Reading FITS sky maps
# =============================================================================================
def _gunzip(data: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise SkyMapRejected(f"corrupt gzip data: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise SkyMapRejected(f"sky map larger than {max_bytes} bytes once decompressed")
    if not inflater.eof:
        raise SkyMapRejected("truncated gzip data")
    return out


def skymap_from_base64(text: str | bytes, **kwargs) -> SkyMap:
    """:func:`load_skymap` of a base64 string (as LVK ``event.skymap``)."""
    try:
        if isinstance(text, bytes):
            text = text.decode("ascii")
        data = base64.b64decode("".join(text.split()), validate=True)
    except (ValueError, TypeError) as exc:
        raise SkyMapRejected(f"sky map is not valid base64: {exc}") from None
    return load_skymap(data, **kwargs)


def load_skymap(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS) -> SkyMap:
    """Read a HEALPix probability sky map from FITS bytes (optionally gzip-compressed), strictly.

    Accepted: a binary table with ``PIXTYPE = 'HEALPIX'``, either multi-order (``ORDERING = 'NUNIQ'``
    or a ``UNIQ`` column, with ``PROBDENSITY`` per steradian, as LVK) or flat (``ORDERING`` RING or
    NESTED; a ``PROB``/``PROBABILITY`` column per pixel, or ``PROBDENSITY``; implicit full sky, or
    explicit with a ``PIXEL`` column), in equatorial coordinates. Raises :class:`SkyMapRejected` for
    anything else, and for NaN/infinite or negative values or a total probability far from 1.
    """
    try:
        return _load_skymap(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except SkyMapRejected:
        raise
    except MemoryError:
        raise SkyMapRejected("sky map too large for memory") from None
    except Exception as exc:  # noqa: BLE001 - the contract: nothing else escapes
        raise SkyMapRejected(f"unreadable sky map ({type(exc).__name__}: {exc})"[:300]) from None


def _load_skymap(data: bytes, *, max_bytes: int, max_pixels: int) -> SkyMap:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SkyMapRejected(f"sky map must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise SkyMapRejected(f"sky map of {len(data)} bytes is larger than the limit of {max_bytes} bytes")
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip(data, max_bytes)
    if not data.startswith(_FITS_MAGIC):
        raise SkyMapRejected("not a FITS file (no SIMPLE card at the start)")
    if len(data) % 2880:
        raise SkyMapRejected(f"truncated or padded FITS file ({len(data)} bytes, not a multiple of 2880)")

    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=False)
        except Exception as exc:  # noqa: BLE001
            raise SkyMapRejected(f"corrupt FITS file ({type(exc).__name__}: {exc})"[:300]) from None
        with hdul:
            hdu = _healpix_hdu(hdul)
            return _read_table(hdu, max_pixels=max_pixels)


def _healpix_hdu(hdul):  # noqa: ANN001, ANN202
    from astropy.io import fits

    tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
    for hdu in tables:
        if str(hdu.header.get("PIXTYPE", "")).strip().upper() == "HEALPIX":
            return hdu
    if not tables:
        kinds = ", ".join(type(h).__name__ for h in hdul)
        raise SkyMapRejected(f"not a HEALPix map: no binary table in the FITS file ({kinds})")
    raise SkyMapRejected("not a HEALPix map: no binary table with PIXTYPE = 'HEALPIX'")


def _column(hdu, names: Iterable[str]) -> str | None:  # noqa: ANN001
    present = {name.upper(): name for name in hdu.columns.names}
    for name in names:
        if name in present:
            return present[name]
    return None


def _values(hdu, name: str) -> np.ndarray:  # noqa: ANN001
    values = np.asarray(hdu.data[name])
    if values.dtype.kind not in "fiu":
        raise SkyMapRejected(f"column {name} is not numeric ({values.dtype})")
    return values.astype(np.float64, copy=False).ravel()


def _read_table(hdu, *, max_pixels: int) -> SkyMap:  # noqa: ANN001
    header = hdu.header
    coordsys = str(header.get("COORDSYS", "C")).strip().upper()[:1]
    if coordsys not in ("C", "Q", "E", ""):
        raise SkyMapRejected(f"sky map in coordinate system {header.get('COORDSYS')!r}: only equatorial (C) is read")
    if coordsys == "E":
        raise SkyMapRejected("sky map in ecliptic coordinates: only equatorial (C) is read")
    n_rows = int(header.get("NAXIS2", 0))
    repeat = max((int(c.format.repeat or 1) for c in hdu.columns), default=1)
    if n_rows * repeat > max_pixels:
        raise SkyMapRejected(f"sky map of {n_rows * repeat} pixels is larger than the limit of {max_pixels}")
    if n_rows == 0:
        raise SkyMapRejected("sky map table is empty")
    ordering = str(header.get("ORDERING", "")).strip().upper()
    meta = {key: header[key] for key in ("OBJECT", "DATE-OBS", "CREATOR", "INSTRUME") if key in header}
    uniq_name = _column(hdu, ("UNIQ",))
    if ordering == "NUNIQ" or (uniq_name and ordering in ("", "NUNIQ")):
        return _read_moc(hdu, uniq_name, meta)
    if ordering not in ("RING", "NESTED"):
        raise SkyMapRejected(f"not a HEALPix map: ORDERING is {header.get('ORDERING')!r} (RING, NESTED or NUNIQ)")
    return _read_flat(hdu, ordering, meta)


def _check_probabilities(prob: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(prob)):
        raise SkyMapRejected(f"sky map has {int(np.sum(~np.isfinite(prob)))} NaN or infinite {what} values")
    if np.any(prob < 0):
        raise SkyMapRejected(f"sky map has {int(np.sum(prob < 0))} negative {what} values (min {prob.min():.3g})")
    total = float(prob.sum())
    if not abs(total - 1.0) <= PROBABILITY_TOLERANCE:
        raise SkyMapRejected(f"total probability is {total:.6g}, not 1 (tolerance {PROBABILITY_TOLERANCE})")


def _read_moc(hdu, uniq_name: str | None, meta: dict) -> SkyMap:  # noqa: ANN001
    if uniq_name is None:
        raise SkyMapRejected("multi-order (NUNIQ) sky map without a UNIQ column")
    prob_name = _column(hdu, ("PROBDENSITY", "PROB", "PROBABILITY"))
    if prob_name is None:
        raise SkyMapRejected("multi-order sky map without a PROBDENSITY column")
    raw_uniq = np.asarray(hdu.data[uniq_name]).ravel()
    if raw_uniq.dtype.kind not in "iu":
        raise SkyMapRejected(f"UNIQ column is not integer ({raw_uniq.dtype})")
    uniq = raw_uniq.astype(np.int64)
    if uniq.size and (uniq.min() < 4 or uniq.max() >= 16 * 4**MAX_ORDER):
        raise SkyMapRejected("UNIQ values out of range (not HEALPix NUNIQ indices)")
    # order = floor(log2(uniq / 4) / 2), exactly, from the bit length
    bits = np.floor(np.log2(uniq.astype(np.float64))).astype(np.int64)
    bits = np.where((np.int64(1) << bits) > uniq, bits - 1, bits)
    bits = np.where((np.int64(1) << (bits + 1)) <= uniq, bits + 1, bits)
    order = (bits - 2) // 2
    ipix = uniq - (np.int64(4) << (2 * order))
    if np.any(order > MAX_ORDER):
        raise SkyMapRejected("UNIQ values out of range (order above 29)")
    values = _values(hdu, prob_name)
    if values.size != uniq.size:
        raise SkyMapRejected("UNIQ and probability columns differ in length")
    if not np.all(np.isfinite(values)):
        raise SkyMapRejected(f"sky map has {int(np.sum(~np.isfinite(values)))} NaN or infinite {prob_name} values")
    prob = values * pixel_area_sr(order) if prob_name.upper() == "PROBDENSITY" else values
    # pixels must not overlap (ranges at order 29 disjoint)
    shift = 2 * (MAX_ORDER - order)
    starts, ends = ipix << shift, (ipix + 1) << shift
    sort = np.argsort(starts, kind="stable")
    if np.any(starts[sort][1:] < ends[sort][:-1]):
        raise SkyMapRejected("multi-order sky map has overlapping or repeated pixels")
    _check_probabilities(prob, prob_name)
    return SkyMap(order, ipix, prob, kind="multi-order", meta=meta)


def _read_flat(hdu, ordering: str, meta: dict) -> SkyMap:  # noqa: ANN001
    header = hdu.header
    prob_name = _column(hdu, _PROB_COLUMNS)
    pixel_name = _column(hdu, ("PIXEL",))
    scheme = str(header.get("INDXSCHM", "IMPLICIT")).strip().upper()
    if prob_name is None:
        candidates = [n for n in hdu.columns.names if n.upper() != "PIXEL"]
        if len(candidates) != 1:
            raise SkyMapRejected(f"flat sky map without a PROB column (columns: {', '.join(hdu.columns.names)})")
        prob_name = candidates[0]
    values = _values(hdu, prob_name)
    nside_card = header.get("NSIDE")
    if scheme == "EXPLICIT" or pixel_name is not None:
        if pixel_name is None or nside_card is None:
            raise SkyMapRejected("explicit-index flat sky map without a PIXEL column or NSIDE")
        nside = int(nside_card)
        pixels = np.asarray(hdu.data[pixel_name]).astype(np.int64).ravel()
        if pixels.size != values.size:
            raise SkyMapRejected("PIXEL and probability columns differ in length")
    else:
        nside = int(round(math.sqrt(values.size / 12.0)))
        if 12 * nside * nside != values.size:
            raise SkyMapRejected(f"flat sky map of {values.size} pixels: not 12 * NSIDE**2")
        if nside_card is not None and int(nside_card) != nside:
            raise SkyMapRejected(f"NSIDE = {nside_card} but the map has {values.size} pixels (NSIDE {nside})")
        pixels = None
    if nside < 1 or nside & (nside - 1) or nside > 2**MAX_ORDER:
        raise SkyMapRejected(f"NSIDE = {nside} is not a power of 2")
    order = nside.bit_length() - 1
    npix = 12 * nside * nside
    if pixels is not None and (pixels.size and (pixels.min() < 0 or pixels.max() >= npix)):
        raise SkyMapRejected("PIXEL values out of range for NSIDE")
    if pixels is not None and np.unique(pixels).size != pixels.size:
        raise SkyMapRejected("repeated PIXEL values")
    prob = values * pixel_area_sr(order) if prob_name.upper() == "PROBDENSITY" else values
    _check_probabilities(prob, prob_name)
    if pixels is None:
        pixels = np.arange(npix, dtype=np.int64)
    keep = prob > 0
    pixels, prob = pixels[keep], prob[keep]
    if ordering == "RING":
        pixels = ang2nest(order, *ring2ang(order, pixels))
    return SkyMap(np.full(pixels.size, order), pixels, prob, kind=f"flat-{ordering.lower()}", meta=meta)


# =============================================================================================
# The fixed grid of fields
# =============================================================================================
class FieldGrid:
    """Fields of ``width`` x ``height`` degrees in declination bands, neighbours overlapping by ``overlap``.

    Band ``b`` is centred at ``-90 + (b + 1/2) * 180 / n_bands``; its fields are equally spaced in RA
    from RA 0, as many as needed to cover the band's edge nearest the equator. Field indices run band by
    band from the south pole; they depend only on (width, height, overlap).
    """

    def __init__(self, width_deg: float, height_deg: float, overlap: float = DEFAULT_OVERLAP) -> None:
        if not (0.0 < width_deg <= 30.0 and 0.0 < height_deg <= 30.0):
            raise ValueError(f"field size must be in (0, 30] deg, got {width_deg} x {height_deg}")
        if not 0.0 <= overlap < 0.5:
            raise ValueError(f"overlap must be in [0, 0.5), got {overlap}")
        self.width_deg, self.height_deg, self.overlap = float(width_deg), float(height_deg), float(overlap)
        self.n_bands = math.ceil(180.0 / (height_deg * (1.0 - overlap)))
        self.band_step_deg = 180.0 / self.n_bands
        self.band_dec_deg = -90.0 + self.band_step_deg * (np.arange(self.n_bands) + 0.5)
        edge = np.maximum(np.abs(self.band_dec_deg) - self.band_step_deg / 2.0, 0.0)
        self.n_ra = np.maximum(1, np.ceil(360.0 * np.cos(np.radians(edge)) / (width_deg * (1.0 - overlap))))
        self.n_ra = self.n_ra.astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.n_ra)])
        self.size = int(self.offsets[-1])
        self.tan_half_w = math.tan(math.radians(width_deg) / 2.0)
        self.tan_half_h = math.tan(math.radians(height_deg) / 2.0)
        self.half_diagonal_rad = math.atan(math.hypot(self.tan_half_w, self.tan_half_h))

    def centres_deg(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.asarray(index, dtype=np.int64)
        band = np.searchsorted(self.offsets, index, side="right") - 1
        j = index - self.offsets[band]
        return j * (360.0 / self.n_ra[band]), self.band_dec_deg[band]

    def contains(self, centre_ra, centre_dec, ra, dec) -> np.ndarray:  # noqa: ANN001
        """Whether directions (ra, dec, radians) fall in fields centred at (centre_ra, centre_dec, radians)."""
        return self._contains(ra - centre_ra, np.sin(centre_dec), np.cos(centre_dec), np.sin(dec), np.cos(dec))

    def _contains(self, d_ra, sin_c, cos_c, sin_d, cos_d) -> np.ndarray:  # noqa: ANN001
        cos_dra = np.cos(d_ra)
        denom = sin_c * sin_d + cos_c * cos_d * cos_dra
        front = denom > 1e-12
        safe = np.where(front, denom, 1.0)
        xi = cos_d * np.sin(d_ra) / safe
        eta = (cos_c * sin_d - sin_c * cos_d * cos_dra) / safe
        return front & (np.abs(xi) <= self.tan_half_w) & (np.abs(eta) <= self.tan_half_h)

    def footprint_deg(self, ra_deg: float, dec_deg: float, points_per_side: int = 8) -> np.ndarray:
        """The outline of a field (N x 2 array of ra, dec in degrees), gnomonic rectangle sampled along its sides."""
        s = np.linspace(-1.0, 1.0, points_per_side)
        one = np.ones_like(s)
        xi = np.concatenate([s, one, -s, -one]) * self.tan_half_w
        eta = np.concatenate([-one, s, one, -s]) * self.tan_half_h
        ra0, dec0 = math.radians(ra_deg), math.radians(dec_deg)
        rho = np.hypot(xi, eta)
        c = np.arctan(rho)
        sin_cc, cos_cc = np.sin(c), np.cos(c)
        with np.errstate(invalid="ignore", divide="ignore"):
            dec = np.arcsin(cos_cc * math.sin(dec0) + np.where(rho > 0, eta * sin_cc * math.cos(dec0) / rho, 0.0))
        ra = ra0 + np.arctan2(xi * sin_cc, rho * math.cos(dec0) * cos_cc - eta * math.sin(dec0) * sin_cc)
        return np.column_stack([np.degrees(ra) % 360.0, np.degrees(dec)])

    def pairs(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All (direction, field) pairs with the direction inside the field: (positions, field indices)."""
        hd = self.half_diagonal_rad
        dec_deg = np.degrees(dec)
        hd_deg = math.degrees(hd)
        step = self.band_step_deg
        b_lo = np.clip(np.ceil((dec_deg - hd_deg + 90.0) / step - 0.5), 0, self.n_bands - 1).astype(np.int64)
        b_hi = np.clip(np.floor((dec_deg + hd_deg + 90.0) / step - 0.5), 0, self.n_bands - 1).astype(np.int64)
        counts = np.maximum(b_hi - b_lo + 1, 0)
        point = np.repeat(np.arange(ra.size), counts)
        band = np.repeat(b_lo, counts) + _ragged_arange(counts)
        # RA half-extent of the centres of fields that may hold the point
        cos_d = np.cos(dec[point])
        sin_hd = math.sin(hd)
        full = cos_d <= sin_hd
        hw = np.where(full, np.pi, np.arcsin(np.clip(sin_hd / np.where(full, 1.0, cos_d), 0.0, 1.0)))
        n_ra = self.n_ra[band]
        step_ra = 2 * np.pi / n_ra
        j_lo = np.ceil((ra[point] - hw) / step_ra - 1e-9).astype(np.int64)
        j_hi = np.floor((ra[point] + hw) / step_ra + 1e-9).astype(np.int64)
        count = np.minimum(j_hi - j_lo + 1, n_ra)
        j_lo = np.where(count >= n_ra, 0, j_lo)
        point2 = np.repeat(point, count)
        band2 = np.repeat(band, count)
        j = np.mod(np.repeat(j_lo, count) + _ragged_arange(count), self.n_ra[band2])
        band_dec = np.radians(self.band_dec_deg)
        inside = self._contains(ra[point2] - j * (2 * np.pi / self.n_ra[band2]), np.sin(band_dec)[band2],
                                np.cos(band_dec)[band2], np.sin(dec)[point2], np.cos(dec)[point2])
        return point2[inside], (self.offsets[band2] + j)[inside]


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])``, vectorised."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts


# =============================================================================================
# Observability (erfa only)
# =============================================================================================
def _as_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name} must be an aware UTC datetime")
    return value.astimezone(UTC)


class _Sky:
    """Sidereal time, precession-nutation and the Sun over a time grid, at one site."""

    def __init__(self, lat_deg: float, lon_deg: float, start: datetime, end: datetime, step_s: float) -> None:
        import erfa

        self.start = start
        span = (end - start).total_seconds()
        n = max(1, math.ceil(span / step_s - 1e-9))
        self.t_s = np.linspace(0.0, span, n + 1)
        self.step_s = span / n
        day0 = math.floor(start.timestamp() / 86400.0)
        jd1 = 2440587.5 + day0
        frac = (start.timestamp() - day0 * 86400.0 + self.t_s) / 86400.0
        tt_frac = frac + TT_MINUS_UTC_S / 86400.0
        # UT1 ~ UTC (|DUT1| < 0.9 s: 13" of hour angle at most)
        gast = erfa.gst06a(jd1, frac, jd1, tt_frac)
        mid = len(frac) // 2
        self.npb = erfa.pnm06a(jd1, tt_frac[mid])  # GCRS -> true equator and equinox of date
        lat = math.radians(lat_deg)
        self.sin_lat, self.cos_lat = math.sin(lat), math.cos(lat)
        self.lst = gast + math.radians(lon_deg)
        # Sun: geocentric direction = - heliocentric Earth position (BCRS axes ~ GCRS), then of date
        pvh, _pvb = erfa.epv00(jd1, tt_frac)
        sun = -np.asarray(pvh["p"], dtype=np.float64)
        sun = sun / np.linalg.norm(sun, axis=-1, keepdims=True)
        sun_date = sun @ self.npb.T
        sin_alt = self.sin_lat * sun_date[:, 2] + self.cos_lat * (
            sun_date[:, 0] * np.cos(self.lst) + sun_date[:, 1] * np.sin(self.lst)
        )
        self.sun_alt_deg = np.degrees(np.arcsin(np.clip(sin_alt, -1.0, 1.0)))

    def sin_altitudes(self, xyz_date: np.ndarray, samples: np.ndarray) -> np.ndarray:
        """sin(altitude) of directions of date (N x 3) at the given samples: N x len(samples)."""
        lst = self.lst[samples]
        basis = np.stack([self.cos_lat * np.cos(lst), self.cos_lat * np.sin(lst), np.full(lst.size, self.sin_lat)])
        return xyz_date @ basis

    def of_date(self, ra_rad: np.ndarray, dec_rad: np.ndarray) -> np.ndarray:
        return _unit(ra_rad, dec_rad) @ self.npb.T

    def utc(self, t_s: float) -> datetime:
        return self.start + timedelta(seconds=float(t_s))


# =============================================================================================
# Planning
# =============================================================================================
@dataclass(frozen=True)
class Tile:
    """One field to observe. ``index`` is its place in the fixed grid of its field size (stable across plans)."""

    index: int
    rank: int  # 1 = observe first
    ra_deg: float
    dec_deg: float
    fov_width_deg: float
    fov_height_deg: float
    overlap: float
    probability: float  # enclosed by this field
    cumulative_probability: float  # enclosed by the union of this and all earlier tiles (and observed ones)
    score: float  # probability x observability weight: the ranking key
    observable_fraction: float  # of the dark time of the window, the fraction this field is above the limit
    observable_s: float  # how long it is observable in the window (dark and above the limit)
    observable_from_utc: datetime  # first instant observable (to the time step)
    observable_until_utc: datetime  # last instant observable
    best_utc: datetime  # highest while observable
    best_altitude_deg: float
    airmass: float  # sec(z) at best_utc


class TilePlan(list):
    """A list of :class:`Tile`, most probable first, with why the plan stopped or is empty.

    ``reason`` is None when the budget was met; otherwise a sentence (no tile observable, coverage not
    reached...). ``covered_probability`` includes ``observed_probability`` (tiles already observed).
    """

    def __init__(self, tiles: Iterable[Tile] = (), *, reason: str | None = None, covered_probability: float = 0.0,
                 observed_probability: float = 0.0, stopped_by: str = "exhausted", candidates: int = 0,
                 region_order: int = 0, fov: tuple[float, float, float] = (0.0, 0.0, DEFAULT_OVERLAP)) -> None:
        super().__init__(tiles)
        self.reason = reason
        self.covered_probability = covered_probability
        self.observed_probability = observed_probability
        self.stopped_by = stopped_by  # "coverage", "max_tiles", "exhausted" (no more observable tile)
        self.candidates = candidates
        self.region_order = region_order
        self.fov = fov

    def __repr__(self) -> str:
        return (f"TilePlan({len(self)} tiles, covered {self.covered_probability:.3f}, stopped by {self.stopped_by}"
                f"{', ' + self.reason if self.reason else ''})")


def _check_site(site: Sequence[float]) -> tuple[float, float, float]:
    try:
        lat, lon, elevation = (float(v) for v in site)
    except (TypeError, ValueError):
        raise ValueError("site must be (latitude_deg, longitude_deg, elevation_m)") from None
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"site latitude out of range: {lat}")
    return lat, lon, elevation


def plan_tiles(
    *,
    skymap: SkyMap | None = None,
    circle: tuple[float, float, float] | None = None,
    fov_width_deg: float,
    fov_height_deg: float,
    site: tuple[float, float, float],
    start_utc: datetime,
    end_utc: datetime,
    min_altitude_deg: float,
    max_tiles: int | None = None,
    coverage: float | None = None,
    sun_max_alt_deg: float = -12.0,
    overlap: float = DEFAULT_OVERLAP,
    circle_profile: str = "gaussian",
    exclude_indices: Iterable[int] = (),
    time_step_s: float = 120.0,
    full_weight_s: float = 1800.0,
) -> TilePlan:
    """Fields of the fixed grid to observe from ``site`` between ``start_utc`` and ``end_utc``, most probable first.

    The localisation is ``skymap`` or ``circle = (ra_deg, dec_deg, radius_deg)`` (``circle_profile``
    ``gaussian``: radius = 90 % containment; ``uniform``: flat inside the radius). A field is observable
    while the Sun is below ``sun_max_alt_deg`` and its centre above ``min_altitude_deg`` (sampled every
    ``time_step_s``); its score is its enclosed probability times min(1, observable time / ``full_weight_s``)
    (by default a field up for 30 minutes is as good as one up all night; one up for 10 minutes counts a third).
    Unobservable fields are left out; fields in ``exclude_indices`` too, their probability counting as
    covered. Stops after ``max_tiles`` tiles or once the union of tiles covers ``coverage`` (either, both
    or neither: then every observable field with probability).
    """
    if (skymap is None) == (circle is None):
        raise ValueError("give exactly one of skymap and circle")
    if max_tiles is not None and max_tiles < 1:
        raise ValueError("max_tiles must be >= 1")
    if coverage is not None and not 0.0 < coverage <= 1.0:
        raise ValueError("coverage must be in (0, 1]")
    if time_step_s <= 0 or full_weight_s < 0:
        raise ValueError("time_step_s must be > 0 and full_weight_s >= 0")
    lat, lon, _elevation = _check_site(site)
    start, end = _as_utc(start_utc, "start_utc"), _as_utc(end_utc, "end_utc")
    if end <= start:
        raise ValueError(f"empty window: {start.isoformat()} .. {end.isoformat()}")
    grid = FieldGrid(fov_width_deg, fov_height_deg, overlap)
    fov = (grid.width_deg, grid.height_deg, grid.overlap)
    side = min(fov_width_deg, fov_height_deg)
    if skymap is None:
        skymap = SkyMap.from_circle(*circle, profile=circle_profile, min_order=_field_order(side, PIXELS_PER_FIELD))
    region = skymap.region(_field_order(side, PIXELS_PER_FIELD), _field_order(side, MIN_PIXELS_PER_FIELD))

    point, field = grid.pairs(region.ra, region.dec)
    candidates, inverse = np.unique(field, return_inverse=True)
    field_prob = np.bincount(inverse, weights=region.prob[point], minlength=candidates.size)
    by_field = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[by_field], np.arange(candidates.size + 1))
    covered = np.zeros(region.prob.size, dtype=bool)
    excluded = np.isin(candidates, np.fromiter((int(i) for i in exclude_indices), dtype=np.int64))
    for c in np.flatnonzero(excluded):
        covered[point[by_field[bounds[c]:bounds[c + 1]]]] = True
    observed_prob = float(region.prob[covered].sum())

    def empty(reason: str) -> TilePlan:
        return TilePlan(reason=reason, covered_probability=observed_prob, observed_probability=observed_prob,
                        stopped_by="exhausted", candidates=int(candidates.size), region_order=region.order, fov=fov)

    window = f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC"
    if coverage is not None and observed_prob >= coverage - 1e-12:
        return TilePlan(covered_probability=observed_prob, observed_probability=observed_prob, stopped_by="coverage",
                        candidates=int(candidates.size), region_order=region.order, fov=fov)
    sky = _Sky(lat, lon, start, end, time_step_s)
    dark = sky.sun_alt_deg <= sun_max_alt_deg
    if not dark.any():
        return empty(f"no dark time: the Sun is never below {sun_max_alt_deg:g} deg {window}")
    open_rows = np.flatnonzero(~excluded & (field_prob > 0))
    if open_rows.size == 0:
        return empty("no field left: every field holding probability is excluded (already observed)")

    ra_c, dec_c = grid.centres_deg(candidates[open_rows])
    dark_k = np.flatnonzero(dark)
    xyz = sky.of_date(np.radians(ra_c), np.radians(dec_c))
    sin_min = math.sin(math.radians(min_altitude_deg))
    n_good = np.empty(open_rows.size, dtype=np.int64)
    highest = np.empty(open_rows.size)
    chunk = max(1, _MAX_MATRIX_ELEMENTS // dark_k.size)  # fields x dark samples, in bounded blocks
    for first in range(0, open_rows.size, chunk):
        sin_alt = sky.sin_altitudes(xyz[first:first + chunk], dark_k)
        n_good[first:first + chunk] = np.count_nonzero(sin_alt >= sin_min, axis=1)
        highest[first:first + chunk] = sin_alt.max(axis=1)
    observable_s = np.minimum(n_good * sky.step_s, sky.t_s[-1])
    weight = np.minimum(1.0, observable_s / full_weight_s) if full_weight_s > 0 else (n_good > 0).astype(float)
    score = field_prob[open_rows] * weight
    selectable = np.flatnonzero(score > 0)
    if selectable.size == 0:
        best = int(np.argmax(field_prob[open_rows]))
        reached = math.degrees(math.asin(float(np.clip(highest[best], -1.0, 1.0))))
        return empty(
            f"no field observable: the localisation is never above {min_altitude_deg:g} deg while the Sun is below "
            f"{sun_max_alt_deg:g} deg {window} (the most probable field reaches {reached:.1f} deg)"
        )
    ranking = selectable[np.lexsort((candidates[open_rows][selectable], -field_prob[open_rows][selectable],
                                     -score[selectable]))]

    # Coverage of the union, in ranking order: each pixel counts for the first ranked field holding it.
    rank_of_candidate = np.full(candidates.size, np.iinfo(np.int64).max)
    rank_of_candidate[open_rows[ranking]] = np.arange(ranking.size)
    first_rank = np.full(region.prob.size, np.iinfo(np.int64).max)
    np.minimum.at(first_rank, point, rank_of_candidate[inverse])
    counted = (first_rank < ranking.size) & ~covered
    gains = np.bincount(first_rank[counted], weights=region.prob[counted], minlength=ranking.size)
    cumulative = observed_prob + np.cumsum(gains)
    n_take = ranking.size
    stopped_by = "exhausted"
    if coverage is not None and cumulative[-1] >= coverage - 1e-12:
        n_take = int(np.searchsorted(cumulative, coverage - 1e-12)) + 1
        stopped_by = "coverage"
    if max_tiles is not None and max_tiles < n_take:
        n_take, stopped_by = max_tiles, "max_tiles"
    rows = ranking[:n_take]
    chosen = open_rows[rows]

    # Times: first, last and highest observable sample of each chosen field
    sin_alt = sky.sin_altitudes(xyz[rows], dark_k)
    g = sin_alt >= sin_min
    k_first = dark_k[np.argmax(g, axis=1)]
    k_last = dark_k[g.shape[1] - 1 - np.argmax(g[:, ::-1], axis=1)]
    k_best_col = np.argmax(np.where(g, sin_alt, -2.0), axis=1)
    best_sin = np.clip(sin_alt[np.arange(rows.size), k_best_col], 1e-9, 1.0)
    best_alt = np.degrees(np.arcsin(best_sin))
    k_best = dark_k[k_best_col]
    dark_s = float(dark_k.size) * sky.step_s
    tiles = [
        Tile(index=int(candidates[c]), rank=n + 1, ra_deg=float(ra_c[row]), dec_deg=float(dec_c[row]),
             fov_width_deg=grid.width_deg, fov_height_deg=grid.height_deg, overlap=grid.overlap,
             probability=float(field_prob[c]), cumulative_probability=min(1.0, float(cumulative[n])),
             score=float(score[row]), observable_fraction=float(observable_s[row] / dark_s),
             observable_s=float(observable_s[row]), observable_from_utc=sky.utc(sky.t_s[k_first[n]]),
             observable_until_utc=sky.utc(sky.t_s[k_last[n]]), best_utc=sky.utc(sky.t_s[k_best[n]]),
             best_altitude_deg=float(best_alt[n]), airmass=float(1.0 / best_sin[n]))
        for n, (row, c) in enumerate(zip(rows.tolist(), chosen.tolist(), strict=True))
    ]
    covered_prob = min(1.0, float(cumulative[n_take - 1]))
    reason = None
    if coverage is not None and covered_prob < coverage - 1e-12:
        if stopped_by == "max_tiles":
            reason = f"max_tiles={max_tiles} reached at coverage {covered_prob:.3f} < {coverage:g}"
        else:
            reason = f"coverage {coverage:g} not reachable: the observable fields cover {covered_prob:.3f} {window}"
    return TilePlan(tiles, reason=reason, covered_probability=covered_prob, observed_probability=observed_prob,
                    stopped_by=stopped_by, candidates=int(candidates.size), region_order=region.order, fov=fov)


def replan_tiles(
    previous: Sequence[Tile],
    observed_indices: Iterable[int],
    new_skymap: SkyMap | None = None,
    *,
    circle: tuple[float, float, float] | None = None,
    **kwargs,
) -> TilePlan:
    """Plan again for an updated localisation, on the same grid as ``previous``, leaving observed fields out.

    The probability of the observed fields under the new map counts as covered (``observed_probability``),
    so ``coverage`` is the total to reach, observed fields included. Other arguments as :func:`plan_tiles`
    (the field size and overlap default to those of ``previous``).
    """
    sizes = {(t.fov_width_deg, t.fov_height_deg, t.overlap) for t in previous}
    if len(sizes) > 1:
        raise ValueError(f"previous tiles come from several grids: {sorted(sizes)}")
    if sizes:
        width, height, overlap = sizes.pop()
        for key, value in (("fov_width_deg", width), ("fov_height_deg", height), ("overlap", overlap)):
            if key in kwargs and kwargs[key] != value:
                raise ValueError(f"{key}={kwargs[key]} differs from the previous plan's {value}: indices would not match")
            kwargs[key] = value
    exclude = {int(i) for i in observed_indices} | {int(i) for i in kwargs.pop("exclude_indices", ())}
    return plan_tiles(skymap=new_skymap, circle=circle, exclude_indices=exclude, **kwargs)


# =============================================================================================
# Picture (Pillow only)
# =============================================================================================
# viridis, sampled at 9 points
_VIRIDIS = np.array([
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
], dtype=np.float64)


def _colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 (viridis)."""
    x = np.clip(values, 0.0, 1.0) * (len(_VIRIDIS) - 1)
    k = np.minimum(x.astype(np.int64), len(_VIRIDIS) - 2)
    f = (x - k)[..., None]
    return np.round(_VIRIDIS[k] * (1 - f) + _VIRIDIS[k + 1] * f).astype(np.uint8)


def _nice_step(span: float, target: int = 6) -> float:
    raw = max(span, 1e-9) / target
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if raw <= m * power:
            return m * power
    return 10.0 * power


def _font(size: int):  # noqa: ANN202
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def render_tiles_png(
    *,
    skymap: SkyMap | None = None,
    circle: tuple[float, float, float] | None = None,
    tiles: Sequence[Tile],
    observed: Iterable[int] = frozenset(),
    title: str = "",
    width: int = 900,
    height: int = 700,
    circle_profile: str = "gaussian",
) -> bytes:
    """A PNG of the probability map around the localisation, with the tiles (observed ones filled).

    The sky is drawn in a local equirectangular projection (RA increasing to the left, x scaled by
    cos(Dec) at the centre for regions smaller than 60 deg), the probability density in viridis, the
    90 % credible region outlined in white, planned tiles outlined in orange and numbered by rank,
    observed tiles (``observed``: grid indices) filled.
    """
    from PIL import Image, ImageDraw

    if (skymap is None) == (circle is None):
        raise ValueError("give exactly one of skymap and circle")
    if skymap is None:
        skymap = SkyMap.from_circle(*circle, profile=circle_profile)
    observed = {int(i) for i in observed}
    grids: dict[tuple[float, float, float], FieldGrid] = {}
    outlines = []
    for tile in tiles:
        key = (tile.fov_width_deg, tile.fov_height_deg, tile.overlap)
        if key not in grids:
            grids[key] = FieldGrid(*key)
        outlines.append(grids[key].footprint_deg(tile.ra_deg, tile.dec_deg))

    # -- view: the 90 % region and the tiles ---------------------------------------------------
    ra_pix, dec_pix = skymap.pixel_centres_deg()
    densities = skymap.densities()
    idx = np.argsort(-densities, kind="stable")
    n90 = int(np.searchsorted(np.cumsum(skymap.prob[idx]), 0.9)) + 1
    threshold = float(densities[idx[min(n90, idx.size) - 1]])
    top = idx[:n90]
    weights = skymap.prob[top]
    pts_ra = [ra_pix[top]] + [o[:, 0] for o in outlines]
    pts_dec = [dec_pix[top]] + [o[:, 1] for o in outlines]
    # half-size of the coarsest 90 % pixels, so that a single big pixel still shows
    pad = 0.6 * pixel_side_deg(int(skymap.order[top].min()))
    all_ra, all_dec = np.concatenate(pts_ra), np.concatenate(pts_dec)
    if tiles:
        ra0 = math.degrees(math.atan2(np.mean(np.sin(np.radians([t.ra_deg for t in tiles]))),
                                      np.mean(np.cos(np.radians([t.ra_deg for t in tiles])))))
    else:
        ra0 = math.degrees(math.atan2(np.sum(weights * np.sin(np.radians(ra_pix[top]))),
                                      np.sum(weights * np.cos(np.radians(ra_pix[top])))))
    ra0 %= 360.0
    d_ra = (all_ra - ra0 + 180.0) % 360.0 - 180.0
    y_lo, y_hi = float(all_dec.min()) - pad, float(all_dec.max()) + pad
    y_lo, y_hi = max(-90.0, y_lo), min(90.0, y_hi)
    dec0 = 0.5 * (y_lo + y_hi)
    xscale = math.cos(math.radians(dec0)) if (y_hi - y_lo) < 60.0 else 1.0
    xscale = max(xscale, 0.1)
    x_vals = -d_ra * xscale
    x_lo, x_hi = float(x_vals.min()) - pad, float(x_vals.max()) + pad
    span_x, span_y = max((x_hi - x_lo) * 1.08, 0.05), max((y_hi - y_lo) * 1.08, 0.05)
    xc, yc = 0.5 * (x_lo + x_hi), 0.5 * (y_lo + y_hi)

    margin_l, margin_r, margin_t, margin_b = 80, 30, 60, 70
    pw, ph = width - margin_l - margin_r, height - margin_t - margin_b
    scale = min(pw / span_x, ph / span_y)  # image pixels per degree, the same along both axes
    x_min, x_max = xc - pw / (2 * scale), xc + pw / (2 * scale)
    y_min, y_max = yc - ph / (2 * scale), yc + ph / (2 * scale)

    def to_img(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = -(((np.asarray(ra_deg) - ra0 + 180.0) % 360.0) - 180.0) * xscale
        return margin_l + (x - x_min) * scale, margin_t + (y_max - np.asarray(dec_deg)) * scale

    # -- raster of the probability density ----------------------------------------------------
    xs = x_min + (np.arange(pw) + 0.5) / scale
    ys = y_max - (np.arange(ph) + 0.5) / scale
    gx, gy = np.meshgrid(xs, ys)
    sky_ok = (np.abs(gy) <= 90.0) & (np.abs(gx / xscale) <= 180.0)
    ra_g = (ra0 - gx / xscale) % 360.0
    dens = np.zeros(gx.shape)
    dens[sky_ok] = skymap.density_at(ra_g[sky_ok], gy[sky_ok])
    peak = float(dens.max()) or 1.0
    rgb = _colormap(dens / peak)
    rgb[~sky_ok] = (40, 40, 40)
    inside = dens >= threshold
    edge = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1) & np.roll(inside, -1, 1))
    rgb[edge] = (255, 255, 255)

    image = Image.new("RGB", (width, height), (255, 255, 255))
    image.paste(Image.fromarray(rgb, "RGB"), (margin_l, margin_t))
    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw_o = ImageDraw.Draw(overlay)
    label_font = _font(11)
    for tile, outline in zip(tiles, outlines, strict=True):
        # unwrapped around the tile's centre, so that a tile across RA ra0 +- 180 stays in one piece
        cx, _ = to_img(np.array([tile.ra_deg]), np.array([tile.dec_deg]))
        offset = ((outline[:, 0] - tile.ra_deg + 180.0) % 360.0) - 180.0
        px = cx[0] - offset * xscale * scale
        _, py = to_img(outline[:, 0], outline[:, 1])
        polygon = list(zip(px.tolist(), py.tolist(), strict=True))
        if tile.index in observed:
            draw_o.polygon(polygon, fill=(255, 255, 255, 110), outline=(255, 255, 255, 255))
        else:
            draw_o.polygon(polygon, outline=(255, 140, 0, 255))
    # observed fields that are not among the tiles cannot be drawn (no position): noted in the legend
    clip = Image.new("L", (width, height), 0)
    ImageDraw.Draw(clip).rectangle([margin_l, margin_t, margin_l + pw - 1, margin_t + ph - 1], fill=255)
    overlay.putalpha(Image.composite(overlay.getchannel("A"), Image.new("L", (width, height), 0), clip))
    image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    draw = ImageDraw.Draw(image)
    if len(tiles) <= 150:
        for tile in tiles:
            cx, cy = to_img(np.array([tile.ra_deg]), np.array([tile.dec_deg]))
            size = min(tile.fov_width_deg, tile.fov_height_deg) * scale
            if size >= 14 and margin_l <= cx[0] <= margin_l + pw and margin_t <= cy[0] <= margin_t + ph:
                draw.text((float(cx[0]), float(cy[0])), str(tile.rank), fill=(255, 255, 255), font=label_font,
                          anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))

    # -- axes ---------------------------------------------------------------------------------
    font = _font(13)
    black = (0, 0, 0)
    draw.rectangle([margin_l - 1, margin_t - 1, margin_l + pw, margin_t + ph], outline=black)
    dec_step = _nice_step(min(y_max, 90.0) - max(y_min, -90.0))
    for dec_t in np.arange(math.ceil(y_min / dec_step) * dec_step, y_max + 1e-9, dec_step):
        if abs(dec_t) > 90:
            continue
        y = margin_t + (y_max - dec_t) * scale
        draw.line([margin_l - 5, y, margin_l, y], fill=black)
        draw.text((margin_l - 8, y), f"{dec_t:g}", fill=black, font=font, anchor="rm")
    ra_span = (x_max - x_min) / xscale
    ra_step = _nice_step(ra_span)
    ra_left = ra0 - x_min / xscale  # RA at the left edge (RA grows to the left)
    first = math.floor(ra_left / ra_step) * ra_step
    for k in range(int(ra_span / ra_step) + 2):
        ra_t = first - k * ra_step
        x = margin_l + (-(ra_t - ra0) * xscale - x_min) * scale
        if margin_l <= x <= margin_l + pw:
            draw.line([x, margin_t + ph, x, margin_t + ph + 5], fill=black)
            draw.text((x, margin_t + ph + 8), f"{ra_t % 360.0:g}", fill=black, font=font, anchor="mt")
    draw.text((margin_l + pw / 2, height - 22), "RA (deg, J2000)", fill=black, font=font, anchor="mm")
    label = Image.new("RGBA", (160, 20), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((80, 10), "Dec (deg, J2000)", fill=black, font=font, anchor="mm")
    label = label.rotate(90, expand=True)
    image.paste(label, (8, margin_t + ph // 2 - 80), label)
    title = (title or "Tiles").replace("\u2014", "-").replace("\u2013", "-")
    draw.text((width / 2, 22), title, fill=black, font=_font(16), anchor="mm")
    n_obs = sum(1 for t in tiles if t.index in observed)
    covered = max((t.cumulative_probability for t in tiles), default=0.0)
    legend = (f"{len(tiles)} tiles ({n_obs} observed, filled), {covered:.0%} of the probability; "
              f"white line: 90% region")
    draw.text((width / 2, 44), legend, fill=(60, 60, 60), font=_font(12), anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
