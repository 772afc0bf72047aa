"""How long a sequence takes on the telescope (pure: plain numbers in, seconds out; no Django).

The estimate is what the scheduler must reserve for the block, so it errs on the long side:

* one slew to the target (a *typical* slew, since the previous target is not known when a request is
  submitted), then the mount's settle time and the acquisition (centring) time;
* for each album, its plans in order: ``count x (exposure + readout)``, plus a filter change before
  every plan whose filter differs from the previous one, *including the first plan* (the wheel may be
  anywhere when the sequence starts);
* albums are the channels of one sequence (one per detector, as in the original PyROS): they are
  exposed simultaneously behind the same pointing, so the sequence lasts as long as its longest album.

The scheduler may reuse :func:`sequence_duration_s`; it recomputes the real slew between two blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A typical slew between two targets of a night plan. Uniformly random pairs on the sky are 90 deg
# apart on average; consecutive blocks of a plan are usually closer, 60 deg is a cautious middle.
TYPICAL_SLEW_DEG = 60.0


@dataclass(frozen=True)
class PlanTiming:
    filter_name: str
    exposure_s: float
    count: int


@dataclass(frozen=True)
class AlbumTiming:
    readout_s: float
    filter_change_s: float
    plans: Sequence[PlanTiming]


@dataclass(frozen=True)
class TelescopeTiming:
    slew_rate_deg_s: float
    settle_s: float
    acquisition_s: float


def pointing_overhead_s(telescope: TelescopeTiming, slew_deg: float = TYPICAL_SLEW_DEG) -> float:
    """Slew + settle + acquisition before the first exposure."""
    return slew_deg / telescope.slew_rate_deg_s + telescope.settle_s + telescope.acquisition_s


def album_duration_s(album: AlbumTiming) -> float:
    """Exposures, readouts and filter changes of one album, in plan order."""
    total_s = 0.0
    previous_filter: str | None = None
    for plan in album.plans:
        if plan.filter_name != previous_filter:
            total_s += album.filter_change_s
            previous_filter = plan.filter_name
        total_s += plan.count * (plan.exposure_s + album.readout_s)
    return total_s


def sequence_duration_s(telescope: TelescopeTiming, albums: Iterable[AlbumTiming],
                        slew_deg: float = TYPICAL_SLEW_DEG) -> float:
    """Pointing overheads + the longest album (albums are simultaneous channels)."""
    longest_album_s = max((album_duration_s(album) for album in albums), default=0.0)
    return pointing_overhead_s(telescope, slew_deg) + longest_album_s
