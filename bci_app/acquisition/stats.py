"""What the acquisition thread counts, kept once: :class:`AcquisitionStats`, and the reading of
lost samples off each chunk's stamps (:class:`GapReader`).

The acquisition thread is the only writer (its gap reading and the epocher it drives); the
report, the window and ``Acquisition.stats`` read copies (:meth:`AcquisitionStats.snapshot`).
A source decides what was lost (dejitter, a package counter) and says it in its stamps, which
jump across a gap by that many periods; the stamps are read once per chunk, by the acquisition
thread, and the epocher and the recorder are handed what was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bci_app.acquisition.dejitter import count_lost


@dataclass
class AcquisitionStats:
    """The acquisition's counts (written by the acquisition thread only).

    Attributes
    ----------
    trials : int
        Trials cut (rejected ones included); the next trial's ``index``.
    samples_lost : int
        Samples missing from the EEG stream, read from its stamps.
    gaps : int
        Places in the stream where samples were missing.
    rejected : dict
        Trials rejected by the epocher, by reason (``gap``, ``nan``, ``incomplete_window``...).
    unknown_markers : int
        Markers the marker mapper did not map to a stimulus (ignored).
    """

    trials: int = 0
    samples_lost: int = 0
    gaps: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    unknown_markers: int = 0

    def add_lost(self, lost: np.ndarray) -> None:
        """Count the per-sample lost counts of one chunk (:meth:`GapReader.read`)."""
        if lost.any():
            self.samples_lost += int(lost.sum())
            self.gaps += int(np.count_nonzero(lost))

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def snapshot(self) -> dict[str, object]:
        """A copy for another thread (each field read once; the dict copied whole)."""
        return {
            "trials": self.trials,
            "samples_lost": self.samples_lost,
            "gaps": self.gaps,
            "rejected": dict(self.rejected),
            "unknown_markers": self.unknown_markers,
        }


class GapReader:
    """Lost samples before each sample of consecutive chunks of one stream, from their stamps
    (:func:`~bci_app.acquisition.dejitter.count_lost`: a step of 1.5 periods or more)."""

    def __init__(self, sfreq: float) -> None:
        self.sfreq = float(sfreq)
        self._last: float | None = None

    def read(self, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lost, breaks)`` per sample of the chunk: the samples missing just before it, and
        whether the stream breaks there (samples missing, or the stamps going backwards)."""
        ts = np.asarray(timestamps, dtype=np.float64).ravel()
        if ts.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, bool)
        prev = self._last if self._last is not None else ts[0] - 1.0 / self.sfreq
        dt = np.diff(np.concatenate([[prev], ts]))
        lost = count_lost(dt, self.sfreq)
        self._last = float(ts[-1])
        return lost, (lost > 0) | (dt < 0)
