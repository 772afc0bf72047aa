"""Overheads between two observing blocks: mount slew, settling, filter change (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SlewModel:
    """The mount and filter wheel seen by the scheduler.

    ``rate_deg_s`` applies to the angular distance between the two targets. That distance is the same in
    Alt/Az as in RA/Dec at any instant (a rotation keeps angles), so it is computed once per pair from
    the catalogue positions and matches astroplan's Transitioner, which measures it in Alt/Az.
    The filter wheel turns while the mount slews, so a transition lasts the longer of the two.
    """

    rate_deg_s: float = 1.0
    settle_s: float = 0.0
    filter_change_s: float = 0.0

    def __post_init__(self) -> None:
        if self.rate_deg_s <= 0:
            raise ValueError("rate_deg_s must be > 0")
        if self.settle_s < 0 or self.filter_change_s < 0:
            raise ValueError("settle_s and filter_change_s must be >= 0")

    def transition_s(self, separation_deg: float, filter_change: bool = False) -> float:
        slew_s = separation_deg / self.rate_deg_s + self.settle_s
        return max(slew_s, self.filter_change_s if filter_change else 0.0)


def separation_matrix_deg(ra_deg: Sequence[float] | np.ndarray, dec_deg: Sequence[float] | np.ndarray) -> np.ndarray:
    """Great-circle angle between every pair of targets (N x N, degrees)."""
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)
    return np.degrees(np.arccos(np.clip(xyz @ xyz.T, -1.0, 1.0)))


def transition_matrix_s(
    model: SlewModel,
    ra_deg: Sequence[float] | np.ndarray,
    dec_deg: Sequence[float] | np.ndarray,
    first_filter: Sequence[str | None],
    last_filter: Sequence[str | None],
) -> np.ndarray:
    """Whole seconds (rounded up, so a plan never under-estimates) from the end of i to the start of j."""
    slew_s = separation_matrix_deg(ra_deg, dec_deg) / model.rate_deg_s + model.settle_s
    np.fill_diagonal(slew_s, 0.0)
    if model.filter_change_s > 0:
        last = np.asarray([f or "" for f in last_filter], dtype=object)
        first = np.asarray([f or "" for f in first_filter], dtype=object)
        changes = (last[:, None] != first[None, :]) & (last[:, None] != "") & (first[None, :] != "")
        slew_s = np.where(changes, np.maximum(slew_s, model.filter_change_s), slew_s)
    # Rounding up absorbs float noise too: a plan must never be a few microseconds short.
    return np.ceil(slew_s - 1e-9).astype(np.int64)


def ceil_s(value: float) -> int:
    return int(math.ceil(value - 1e-9))
