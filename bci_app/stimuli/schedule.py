"""Presentation schedules: which stimulus when, shared by presenter and simulator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Schedule:
    """A list of stimulus ids with onset times (seconds from the start)."""

    stim_ids: list[str]
    onsets: np.ndarray
    on: float
    off: float

    def __len__(self) -> int:
        return len(self.stim_ids)


def make_schedule(
    stim_ids: list[str],
    labels: list[int],
    n_trials: int,
    *,
    on: float = 0.5,
    off: float = 0.0,
    order: str = "random",
    seed: int = 0,
    start: float = 1.0,
) -> Schedule:
    """Draw ``n_trials`` stimuli.

    ``order="random"`` shuffles over all classes (a rapid/randomised design);
    ``order="block"`` shows the images class after class, as the Spampinato set did
    (the design that lets decoders learn time instead of images).
    """
    if order not in ("random", "block"):
        raise ValueError(f"order must be 'random' or 'block', got {order!r}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if on <= 0 or off < 0:
        raise ValueError(f"on must be > 0 and off >= 0 seconds, got on={on}, off={off}")
    rng = np.random.default_rng(seed)
    ids = np.asarray(stim_ids)
    labs = np.asarray(labels)
    if order == "random":
        reps = int(np.ceil(n_trials / len(ids)))
        chosen = np.concatenate([rng.permutation(ids) for _ in range(reps)])[:n_trials]
    else:
        classes = rng.permutation(np.unique(labs))
        per_class = int(np.ceil(n_trials / len(classes)))
        chosen_l: list[str] = []
        while len(chosen_l) < n_trials:
            for c in classes:
                pool = rng.permutation(ids[labs == c])
                chosen_l.extend(np.resize(pool, per_class).tolist())
        chosen = np.asarray(chosen_l[:n_trials])
    onsets = start + np.arange(n_trials) * (on + off)
    return Schedule([str(s) for s in chosen], onsets, on, off)
