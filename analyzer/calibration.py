"""Calibration masters and the calibration of one image (pure: numpy + astropy, no Django).

A raw CCD frame is ``raw = bias + dark_rate * t + flat * sky_and_stars``. The masters are built from
the dusk/dawn calibration frames:

* master bias: per-pixel robust mean of the bias frames (the bias carries a fixed column pattern,
  so a single level would not do);
* master dark: dark current per second, ``(dark - bias) / t`` combined, so it scales to any exposure;
* master flat, one per filter: ``flat - bias - dark * t``, each frame normalised by its median (twilight
  and lamp levels change from frame to frame), combined, normalised to a median of 1.

Combining rejects outliers per pixel (cosmic rays, a satellite trail, a star in a twilight flat) with
a median/MAD sigma clip, then averages what is left: the mean of the kept values is less noisy than a
plain median (by ~20% for 5-10 frames), and the clip makes it as robust.

:func:`load_fits` is where a bad file is turned into an :class:`AnalysisError` with a reason a person
can act on; nothing downstream has to guard against a corrupt file.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

# The order of IMAGETYP spellings seen in the wild (MaxIm DL / INDI / ESO style) -> our frame kinds.
_IMAGETYP_KIND = {
    "light frame": "LIGHT",
    "light": "LIGHT",
    "object": "LIGHT",
    "science": "LIGHT",
    "bias frame": "BIAS",
    "bias": "BIAS",
    "zero": "BIAS",
    "dark frame": "DARK",
    "dark": "DARK",
    "flat field": "FLAT",
    "flat frame": "FLAT",
    "flat": "FLAT",
    "skyflat": "FLAT",
    "domeflat": "FLAT",
}

# A flat pixel below this relative response is dead or behind dust too thick to correct:
# dividing by it would amplify noise, so it is left uncorrected (flat set to 1) and counted.
_FLAT_MIN_RESPONSE = 0.2
_CLIP_SIGMA = 3.0


class AnalysisError(Exception):
    """A frame cannot be analysed; ``str(error)`` is the reason shown to the operator."""


@dataclass
class MasterFrame:
    """A combined calibration frame and where it came from.

    ``data`` is float32: ADU for a bias, ADU per second for a dark (bias removed), a unitless
    response normalised to 1 at the optical centre for a flat.
    """

    kind: str  # "bias" | "dark" | "flat"
    data: np.ndarray
    n_frames: int
    filter_name: str | None = None
    exposure_s: float | None = None  # the exposure(s) of the dark/flat frames combined (median)
    created_utc: datetime = field(default_factory=lambda: datetime.now(UTC))
    n_rejected_px: int = 0  # pixel values rejected by the clip, over all frames
    level: float = 0.0  # median of data (ADU, ADU/s, or 1.0 for a flat)
    noise: float = 0.0  # robust std of data over the frame
    source_ids: list[Any] = field(default_factory=list)  # e.g. Image ids, for provenance
    master_id: Any = None  # set by the caller once stored (CalibrationMaster pk)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance of this master (what the analysis result records)."""
        return {
            "kind": self.kind,
            "id": self.master_id,
            "n_frames": self.n_frames,
            "filter": self.filter_name,
            "exposure_s": self.exposure_s,
            "created_utc": self.created_utc.isoformat(),
            "shape": list(self.shape),
            "level": round(float(self.level), 4),
            "noise": round(float(self.noise), 4),
            "n_rejected_px": int(self.n_rejected_px),
            "source_ids": list(self.source_ids),
        }

    def to_fits_bytes(self) -> bytes:
        """The master as a FITS file (float32) whose header carries its provenance."""
        header = fits.Header()
        header["PYRMKIND"] = (self.kind, "PyROS calibration master kind")
        header["NCOMBINE"] = (self.n_frames, "frames combined")
        if self.filter_name is not None:
            header["FILTER"] = self.filter_name
        if self.exposure_s is not None:
            header["EXPTIME"] = (float(self.exposure_s), "[s] median exposure of the frames")
        header["DATE"] = (self.created_utc.strftime("%Y-%m-%dT%H:%M:%S"), "UTC creation")
        header["NREJECT"] = (int(self.n_rejected_px), "pixel values rejected by the clip")
        header["LEVEL"] = float(self.level)
        header["NOISE"] = float(self.noise)
        buffer = io.BytesIO()
        fits.PrimaryHDU(data=self.data.astype(np.float32), header=header).writeto(buffer)
        return buffer.getvalue()

    @classmethod
    def from_fits_bytes(cls, content: bytes, *, master_id: Any = None) -> MasterFrame:
        with fits.open(io.BytesIO(content), memmap=False) as hdul:
            header = hdul[0].header
            data = np.asarray(hdul[0].data, dtype=np.float32)
        created = datetime.strptime(header["DATE"], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        return cls(
            kind=str(header["PYRMKIND"]),
            data=data,
            n_frames=int(header["NCOMBINE"]),
            filter_name=header.get("FILTER"),
            exposure_s=header.get("EXPTIME"),
            created_utc=created,
            n_rejected_px=int(header.get("NREJECT", 0)),
            level=float(header.get("LEVEL", 0.0)),
            noise=float(header.get("NOISE", 0.0)),
            master_id=master_id,
        )


@dataclass
class Masters:
    """The masters to apply to one science image (any of them may be missing)."""

    bias: MasterFrame | None = None
    dark: MasterFrame | None = None
    flats: dict[str, MasterFrame] = field(default_factory=dict)

    def flat_for(self, filter_name: str | None) -> MasterFrame | None:
        if filter_name is None:
            return None
        if filter_name in self.flats:
            return self.flats[filter_name]
        lowered = {k.lower(): v for k, v in self.flats.items()}
        return lowered.get(filter_name.lower())


# --------------------------------------------------------------------------------------------
# FITS input
# --------------------------------------------------------------------------------------------


def frame_kind(header: fits.Header) -> str:
    """LIGHT / BIAS / DARK / FLAT from IMAGETYP (or FRAME); LIGHT when absent, as most cameras do."""
    raw = header.get("IMAGETYP", header.get("FRAME", "Light Frame"))
    return _IMAGETYP_KIND.get(str(raw).strip().lower(), "LIGHT")


def parse_date_obs(header: fits.Header) -> datetime:
    """DATE-OBS as an aware UTC datetime; raises AnalysisError when missing or unreadable."""
    value = header.get("DATE-OBS")
    if value is None or str(value).strip() == "":
        raise AnalysisError("missing FITS header DATE-OBS (start of exposure, UTC)")
    text = str(value).strip().rstrip("Z")
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise AnalysisError(f"unreadable FITS header DATE-OBS={value!r} (expected ISO 8601 UTC)") from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def exposure_time_s(header: fits.Header) -> float:
    """EXPTIME (or EXPOSURE) in seconds; raises AnalysisError when missing or not a number >= 0."""
    value = header.get("EXPTIME", header.get("EXPOSURE"))
    if value is None:
        raise AnalysisError("missing FITS header EXPTIME (exposure time, s)")
    try:
        exposure_s = float(value)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"unreadable FITS header EXPTIME={value!r}") from exc
    if not math.isfinite(exposure_s) or exposure_s < 0:
        raise AnalysisError(f"invalid FITS header EXPTIME={value!r} (must be >= 0 s)")
    return exposure_s


def load_fits(source: bytes | bytearray | str | os.PathLike[str] | Any, *, require_light_headers: bool = False) -> tuple[
    np.ndarray, fits.Header
]:
    """Read the first 2-D image of a FITS file (bytes, a path or an open binary file) as float32
    (native byte order) with its header.

    Raises :class:`AnalysisError` for an unreadable/truncated file, no 2-D image, non-finite data,
    or (always) a missing/unreadable EXPTIME and DATE-OBS; with ``require_light_headers`` also a
    missing FILTER. The WCS is checked where astrometry needs it (:func:`analyzer.measure.image_wcs`).
    """
    if hasattr(source, "read"):  # an open file, e.g. a Django FieldFile
        source = source.read()
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise AnalysisError("empty file (0 bytes): not a FITS file")
        stream: Any = io.BytesIO(bytes(source))
        name = "<bytes>"
    else:
        path = Path(source)
        if not path.is_file():
            raise AnalysisError(f"no such file: {path}")
        if path.stat().st_size == 0:
            raise AnalysisError(f"empty file (0 bytes): {path.name} is not a FITS file")
        stream = str(path)
        name = path.name
    try:
        with warnings.catch_warnings():
            # Non-standard cards are common in camera files and harmless: astropy fixes them.
            warnings.simplefilter("ignore", category=AstropyWarning)
            # astropy only *warns* on a truncated file and then returns zero-padded data:
            # a cut-short download must fail, not be measured as a frame with a black band.
            warnings.filterwarnings("error", message=".*truncated.*")
            with fits.open(stream, memmap=False, lazy_load_hdus=False) as hdul:
                image_hdu = next(
                    (hdu for hdu in hdul if hdu.is_image and hdu.header.get("NAXIS", 0) == 2 and hdu.data is not None),
                    None,
                )
                if image_hdu is None:
                    raise AnalysisError(f"{name}: no 2-D image in the FITS file")
                header = image_hdu.header.copy()
                data = np.array(image_hdu.data, dtype=np.float32, order="C")
    except AnalysisError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, VerifyError... on junk
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AnalysisError(f"{name}: corrupt or unreadable FITS file ({reason})") from exc
    if data.ndim != 2 or min(data.shape) < 16:
        raise AnalysisError(f"{name}: image too small to analyse (shape {data.shape})")
    if not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad > data.size // 10:
            raise AnalysisError(f"{name}: {bad} non-finite pixels (NaN/inf): corrupt data")
        data[~np.isfinite(data)] = np.nanmedian(data)
    exposure_time_s(header)
    parse_date_obs(header)
    if require_light_headers and not str(header.get("FILTER", "")).strip():
        raise AnalysisError("missing FITS header FILTER (needed to pick the flat and the catalogue band)")
    return data, header


# --------------------------------------------------------------------------------------------
# Combination with outlier rejection
# --------------------------------------------------------------------------------------------


def _stack(frames: Sequence[np.ndarray]) -> np.ndarray:
    if len(frames) == 0:
        raise AnalysisError("no frames to combine")
    shapes = {tuple(np.shape(f)) for f in frames}
    if len(shapes) != 1:
        raise AnalysisError(f"frames of different shapes cannot be combined: {sorted(shapes)}")
    return np.stack([np.asarray(f, dtype=np.float32) for f in frames])


def clipped_combine(cube: np.ndarray, *, sigma: float = _CLIP_SIGMA) -> tuple[np.ndarray, int]:
    """Per-pixel mean of the values within ``sigma`` robust std of the per-pixel median.

    The std is estimated per pixel from the MAD when there are >= 5 frames; with fewer frames the
    per-pixel MAD is too noisy, so the frame-wide robust std of the residuals is used instead.
    With 1-2 frames there is nothing to reject against: median (= mean) it is.
    Returns (combined float32, number of rejected values).
    """
    n = cube.shape[0]
    if n <= 2:
        return np.median(cube, axis=0).astype(np.float32), 0
    median = np.median(cube, axis=0)
    residual = cube - median[None]
    if n >= 5:
        std = 1.4826 * np.median(np.abs(residual), axis=0)
        # A pixel whose frames agree exactly (std 0) must not reject everything that differs by 1 ADU.
        floor = 1.4826 * float(np.median(np.abs(residual))) + 1e-6
        std = np.maximum(std, floor)
    else:
        std = 1.4826 * float(np.median(np.abs(residual))) + 1e-6
    keep = np.abs(residual) <= sigma * std
    n_kept = keep.sum(axis=0)
    combined = np.where(n_kept > 0, (cube * keep).sum(axis=0) / np.maximum(n_kept, 1), median)
    return combined.astype(np.float32), int(keep.size - int(keep.sum()))


def _robust_std(data: np.ndarray) -> float:
    sample = data.ravel()[:: max(1, data.size // 200_000)]
    return float(1.4826 * np.median(np.abs(sample - np.median(sample))))


def _check_shape(master: MasterFrame | None, shape: tuple[int, ...], what: str) -> None:
    if master is not None and master.shape != tuple(shape):
        raise AnalysisError(f"{what}: master {master.kind} has shape {master.shape}, frames have {tuple(shape)}")


def make_master_bias(frames: Sequence[np.ndarray], *, source_ids: Sequence[Any] = ()) -> MasterFrame:
    """Robust per-pixel mean of bias frames (ADU)."""
    cube = _stack(frames)
    data, rejected = clipped_combine(cube)
    return MasterFrame(
        kind="bias",
        data=data,
        n_frames=cube.shape[0],
        n_rejected_px=rejected,
        level=float(np.median(data)),
        noise=_robust_std(data),
        source_ids=list(source_ids),
    )


def make_master_dark(
    frames: Sequence[np.ndarray],
    exposure_s: float | Sequence[float],
    master_bias: MasterFrame | None,
    *,
    source_ids: Sequence[Any] = (),
) -> MasterFrame:
    """Dark current in ADU/s per pixel: each ``(dark - bias) / t`` is combined with rejection.

    ``exposure_s`` is one value for all frames or one per frame. Without a master bias the bias is
    folded into the dark, which is only right for science frames of the same exposure: refuse it.
    """
    cube = _stack(frames)
    exposures = np.broadcast_to(np.asarray(exposure_s, dtype=np.float64), (cube.shape[0],))
    if np.any(exposures <= 0):
        raise AnalysisError("dark frames need an exposure time > 0 s")
    if master_bias is None:
        raise AnalysisError("a master dark needs a master bias (the dark is scaled by exposure time)")
    _check_shape(master_bias, cube.shape[1:], "master dark")
    rate = (cube - master_bias.data[None]) / exposures[:, None, None].astype(np.float32)
    data, rejected = clipped_combine(rate)
    return MasterFrame(
        kind="dark",
        data=data,
        n_frames=cube.shape[0],
        exposure_s=float(np.median(exposures)),
        n_rejected_px=rejected,
        level=float(np.median(data)),
        noise=_robust_std(data),
        source_ids=list(source_ids),
    )


def make_master_flat(
    frames: Sequence[np.ndarray],
    filter_name: str,
    master_bias: MasterFrame | None,
    master_dark: MasterFrame | None = None,
    *,
    exposure_s: float | Sequence[float] | None = None,
    source_ids: Sequence[Any] = (),
) -> MasterFrame:
    """Normalised flat for one filter: bias (and dark, when given with ``exposure_s``) removed, each
    frame divided by its own median, combined with rejection, normalised to 1 at the optical centre."""
    if not filter_name:
        raise AnalysisError("a master flat needs its filter name")
    cube = _stack(frames)
    _check_shape(master_bias, cube.shape[1:], "master flat")
    _check_shape(master_dark, cube.shape[1:], "master flat")
    if master_bias is not None:
        cube -= master_bias.data[None]
    exposures = None
    if master_dark is not None and exposure_s is not None:
        exposures = np.broadcast_to(np.asarray(exposure_s, dtype=np.float32), (cube.shape[0],))
        cube -= master_dark.data[None] * exposures[:, None, None]
    levels = np.array([np.median(frame[:: 4, :: 4]) for frame in cube])
    if np.any(levels <= 0):
        raise AnalysisError(f"flat frames in {filter_name} with no signal (median level {levels.min():.1f} ADU)")
    cube /= levels[:, None, None].astype(np.float32)
    data, rejected = clipped_combine(cube)
    # Normalised at the optical centre (the median of the central 1/8 x 1/8 of the frame), where
    # vignetting is least: calibrated fluxes are then those of an unvignetted pixel, so the zero
    # point describes the telescope + camera on axis, comparable night to night and with the
    # camera's specification (a frame-wide median would fold the mean vignetting into it).
    h, w = data.shape
    centre = data[h * 7 // 16 : h * 9 // 16 + 1, w * 7 // 16 : w * 9 // 16 + 1]
    data /= np.float32(np.median(centre))
    data[~np.isfinite(data) | (data < _FLAT_MIN_RESPONSE)] = 1.0
    return MasterFrame(
        kind="flat",
        data=data,
        n_frames=cube.shape[0],
        filter_name=filter_name,
        exposure_s=None if exposures is None else float(np.median(exposures)),
        n_rejected_px=rejected,
        level=1.0,
        noise=_robust_std(data),
        source_ids=list(source_ids),
    )


# --------------------------------------------------------------------------------------------
# Calibrating a science frame
# --------------------------------------------------------------------------------------------


def calibrate_frame(
    data: np.ndarray, *, exposure_s: float, filter_name: str | None, masters: Masters | None
) -> tuple[np.ndarray, list[dict[str, Any]], list[str]]:
    """``(raw - bias - dark * t) / flat`` with whatever masters apply.

    Returns (calibrated float32, provenance of the masters used, notes about masters not applied).
    A master of the wrong shape (another binning) is skipped with a note rather than failing: an
    uncalibrated measurement is still worth having, and the note says why it is less accurate.
    """
    used: list[dict[str, Any]] = []
    notes: list[str] = []
    out = np.array(data, dtype=np.float32, copy=True)
    if masters is None:
        notes.append("no calibration masters: raw frame measured (bias level removed by the background)")
        return out, used, notes
    shape = tuple(out.shape)

    def usable(master: MasterFrame | None, what: str) -> bool:
        if master is None:
            notes.append(f"no master {what}")
            return False
        if master.shape != shape:
            notes.append(f"master {what} skipped: shape {master.shape} differs from the image {shape}")
            return False
        return True

    if usable(masters.bias, "bias"):
        out -= masters.bias.data  # type: ignore[union-attr]
        used.append(masters.bias.describe())  # type: ignore[union-attr]
    if usable(masters.dark, "dark"):
        if masters.bias is None:
            notes.append("master dark applied without bias: dark is per second after bias removal")
        out -= masters.dark.data * np.float32(exposure_s)  # type: ignore[union-attr]
        used.append(masters.dark.describe())  # type: ignore[union-attr]
    flat = masters.flat_for(filter_name)
    if usable(flat, f"flat for filter {filter_name}"):
        out /= flat.data  # type: ignore[union-attr]
        used.append(flat.describe())  # type: ignore[union-attr]
    return out, used, notes


# --------------------------------------------------------------------------------------------
# From FITS files to masters, and which masters apply to an image
# --------------------------------------------------------------------------------------------

_KIND_OF_MASTER = {"bias": "BIAS", "dark": "DARK", "flat": "FLAT"}


def build_master(
    kind: str,
    sources: Sequence[bytes | str | os.PathLike[str]],
    *,
    master_bias: MasterFrame | None = None,
    master_dark: MasterFrame | None = None,
    source_ids: Sequence[Any] = (),
) -> MasterFrame:
    """A master from calibration FITS files (bytes or paths), checking that they are what they claim.

    Every file must read cleanly and carry the right IMAGETYP; a flat's files must share one
    FILTER, and all files one shape. Darks and flats use each file's own EXPTIME.
    Raises :class:`AnalysisError` naming the offending file (by its position, or its id when given).
    """
    if kind not in _KIND_OF_MASTER:
        raise AnalysisError(f"unknown master kind {kind!r}; expected one of {sorted(_KIND_OF_MASTER)}")
    if not sources:
        raise AnalysisError(f"no frames to build a master {kind}")
    ids = list(source_ids) if source_ids else list(range(len(sources)))
    frames, exposures, filters = [], [], set()
    for frame_id, source in zip(ids, sources, strict=True):
        try:
            data, header = load_fits(source)
        except AnalysisError as exc:
            raise AnalysisError(f"frame {frame_id}: {exc}") from exc
        found = frame_kind(header)
        if found != _KIND_OF_MASTER[kind]:
            raise AnalysisError(f"frame {frame_id} is a {header.get('IMAGETYP', 'Light Frame')!r}, not a {kind} frame")
        frames.append(data)
        exposures.append(exposure_time_s(header))
        filters.add(str(header.get("FILTER", "")).strip())
    if kind == "bias":
        return make_master_bias(frames, source_ids=list(source_ids))
    if kind == "dark":
        return make_master_dark(frames, exposures, master_bias, source_ids=list(source_ids))
    filters.discard("")
    if len(filters) != 1:
        raise AnalysisError(f"flat frames must share one FILTER, found {sorted(filters) or 'none'}")
    return make_master_flat(
        frames, filters.pop(), master_bias, master_dark, exposure_s=exposures, source_ids=list(source_ids)
    )


def select_masters(
    available: Sequence[MasterFrame],
    *,
    shape: tuple[int, int],
    filter_name: str | None,
    when_utc: datetime | None = None,
) -> Masters:
    """The newest master of each kind that fits the image: same shape (hence binning), the image's
    filter for the flat, and (when ``when_utc`` is given) made no later than the image was taken,
    so re-analysing an old image gives the same result as the first time."""

    def newest(kind: str, filter_wanted: str | None = None) -> MasterFrame | None:
        fits_image = [
            m
            for m in available
            if m.kind == kind
            and m.shape == tuple(shape)
            and (filter_wanted is None or (m.filter_name or "").lower() == filter_wanted.lower())
            and (when_utc is None or m.created_utc <= when_utc)
        ]
        return max(fits_image, key=lambda m: m.created_utc, default=None)

    flat = newest("flat", filter_name) if filter_name else None
    return Masters(
        bias=newest("bias"),
        dark=newest("dark"),
        flats={flat.filter_name or filter_name or "": flat} if flat is not None else {},
    )
