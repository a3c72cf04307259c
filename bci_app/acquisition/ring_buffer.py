"""A fixed-length buffer of the most recent EEG samples, indexed by running sample number."""

from __future__ import annotations

import threading

import numpy as np


class RingBuffer:
    """The last ``capacity`` samples of ``n_channels`` channels, plus per-sample metadata.

    Samples are addressed by their absolute index in the stream (0 = first sample ever
    appended). Storage is a linear array of twice the capacity that is compacted when it
    fills, so every read is one contiguous slice. The writer (the acquisition thread)
    holds the lock only while it copies in; readers copy out under the lock.

    Per sample it keeps: the (filtered) data, the LSL timestamp, the local arrival time of
    the chunk it came in, and a "bad" flag (non-finite raw value).
    """

    def __init__(self, n_channels: int, capacity: int, dtype=np.float64) -> None:
        if capacity < 1 or n_channels < 1:
            raise ValueError(
                f"RingBuffer needs n_channels >= 1 and capacity >= 1, got {n_channels}, {capacity}"
            )
        self.n_channels = int(n_channels)
        self.capacity = int(capacity)
        size = 2 * self.capacity
        self._data = np.zeros((self.n_channels, size), dtype=dtype)
        self._ts = np.zeros(size)
        self._arrival = np.zeros(size)
        self._bad = np.zeros(size, dtype=bool)
        self._lo = 0  # storage position of the oldest kept sample
        self._hi = 0  # storage position after the newest sample
        self.n_total = 0  # samples ever appended
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._hi - self._lo

    @property
    def first_index(self) -> int:
        """Absolute index of the oldest sample still held."""
        return self.n_total - len(self)

    def append(
        self,
        data: np.ndarray,
        timestamps: np.ndarray,
        arrival: float,
        bad: np.ndarray | None = None,
    ) -> None:
        n = data.shape[1]
        if n == 0:
            return
        if data.shape[0] != self.n_channels or timestamps.shape[0] != n:
            raise ValueError(
                f"append got data {data.shape} and {timestamps.shape[0]} timestamps; "
                f"expected ({self.n_channels}, n) and n timestamps"
            )
        if n > self.capacity:  # only the newest samples can be kept
            cut = n - self.capacity
            self.n_total += cut
            data, timestamps = data[:, cut:], timestamps[cut:]
            bad = None if bad is None else bad[cut:]
            n = self.capacity
        with self._lock:
            if self._hi + n > self._data.shape[1]:
                keep = min(len(self), self.capacity - n)
                src = slice(self._hi - keep, self._hi)
                self._data[:, :keep] = self._data[:, src]
                self._ts[:keep] = self._ts[src]
                self._arrival[:keep] = self._arrival[src]
                self._bad[:keep] = self._bad[src]
                self._lo, self._hi = 0, keep
            sl = slice(self._hi, self._hi + n)
            self._data[:, sl] = data
            self._ts[sl] = timestamps
            self._arrival[sl] = arrival
            self._bad[sl] = False if bad is None else bad
            self._hi += n
            self.n_total += n
            if len(self) > self.capacity:
                self._lo = self._hi - self.capacity

    def _slice(self, start: int, stop: int) -> slice:
        first = self.first_index
        if start < first or stop > self.n_total or start > stop:
            raise ValueError(
                f"samples [{start}, {stop}) are not in the buffer, which holds [{first}, {self.n_total})"
            )
        return slice(self._lo + start - first, self._lo + stop - first)

    def get(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Copies of (data[C, n], timestamps, arrival times, bad flags) of samples ``[start, stop)``."""
        with self._lock:
            sl = self._slice(start, stop)
            return (
                self._data[:, sl].copy(),
                self._ts[sl].copy(),
                self._arrival[sl].copy(),
                self._bad[sl].copy(),
            )

    def timestamps(self) -> np.ndarray:
        """View of the held timestamps, oldest first (for the writer thread only)."""
        return self._ts[self._lo : self._hi]

    def latest(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the newest ``n`` samples (fewer if not held) and their timestamps."""
        with self._lock:
            n = min(n, len(self))
            sl = slice(self._hi - n, self._hi)
            return self._data[:, sl].copy(), self._ts[sl].copy()
