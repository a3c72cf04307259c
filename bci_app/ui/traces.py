"""EEG traces people can read: display-only filtering, fixed microvolt scale, paging.

Two parts, split so that the arithmetic is testable without Qt:

- :class:`TraceBuffer` (numpy only) keeps the last ``seconds`` of every channel after a
  display-only causal high-pass and notch (the data the pipeline works on is untouched;
  the filter starts at the steady state of each channel's first sample, so electrode
  offsets never show), decimates a page of channels to the plot's pixel width (min/max
  per pixel column, the peak mode of pyqtgraph and mne-qt-browser), maps volts to lane
  units at a fixed scale (clipped to the lane), and flags flat or saturated channels.
- :class:`~bci_app.ui.trace_panel.TracePanel` (Qt) draws one page of channel rows from it: two curves (normal
  and flagged channels), a pool of labelled marker lines, a scale bar, and a scroll bar
  over the montage. Every item is made once; a redraw only calls ``setData``/``setValue``.
  ``+``/``-`` change the scale, PageUp/PageDown (or the scroll bar, or the wheel) page
  through the channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bci_app.preprocessing.filters import CausalFilter

#: microvolts per lane offered by +/- (a 1-2-5 sequence, as on EEG review software)
SCALES_UV = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000)
FLAT_UV = 0.1  # peak-to-peak below this over the last second: the channel is flat
PINNED_FRACTION = 0.05  # this share of a second at its own extreme: clipped by the amplifier


class TraceBuffer:
    """Display copy of the EEG: filtered for the eye, decimated to pixels, scaled to lanes.

    Parameters
    ----------
    n_channels : int
    sfreq : float
        Sampling rate (Hz).
    seconds : float
        Width of the scrolling view.
    highpass : float | None
        Display high-pass (Hz): removes offsets and drift. None: off.
    notch : float | None
        Display notch (Hz, the mains frequency). None: off.
    lowpass : float | None
        Optional display low-pass (Hz).
    saturation_uv : float | None
        An absolute value at or above this (microvolts) marks the channel saturated;
        without it a channel is saturated when it sits at its own extreme for at least
        5 % of the last second (pinned at an amplifier rail).
    """

    def __init__(
        self,
        n_channels: int,
        sfreq: float,
        *,
        seconds: float = 5.0,
        highpass: float | None = 0.5,
        notch: float | None = 50.0,
        lowpass: float | None = None,
        saturation_uv: float | None = None,
    ) -> None:
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        if sfreq <= 0 or seconds <= 0:
            raise ValueError(f"sfreq and seconds must be > 0, got sfreq={sfreq}, seconds={seconds}")
        nyq = sfreq / 2.0
        if notch is not None and notch >= nyq:
            notch = None  # a mains notch above Nyquist has nothing to remove
        if lowpass is not None and lowpass >= nyq:
            lowpass = None
        self.n_channels = int(n_channels)
        self.sfreq = float(sfreq)
        self.seconds = float(seconds)
        self.filter = CausalFilter(sfreq=self.sfreq, n_channels=self.n_channels, l_freq=highpass,
                                   h_freq=lowpass, order=2, notch=notch)
        self.capacity = max(2, int(round(self.seconds * self.sfreq)))
        self._buf = np.zeros((self.n_channels, self.capacity), dtype=np.float32)
        self._raw = np.zeros((self.n_channels, max(2, int(round(self.sfreq)))), dtype=np.float32)
        self._pos = 0  # next write column of _buf
        self._raw_pos = 0
        self.n_total = 0
        self.last_ts: float | None = None
        self.saturation_v = None if saturation_uv is None else float(saturation_uv) * 1e-6

    # ------------------------------------------------------------------ input
    def push(self, data: np.ndarray, timestamps: np.ndarray) -> None:
        """Add ``data[C, n]`` (volts) with its timestamps (the newest one sets "now")."""
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[0] != self.n_channels:
            raise ValueError(f"EEG chunk has shape {data.shape}; expected ({self.n_channels}, n_samples)")
        n = data.shape[1]
        if n == 0:
            return
        ts = np.asarray(timestamps).ravel()
        if ts.size:
            self.last_ts = float(ts[-1])
        _ring_write(self._raw, self._raw_pos, data)
        self._raw_pos = (self._raw_pos + n) % self._raw.shape[1]
        y = self.filter.process(data)
        _ring_write(self._buf, self._pos, y)
        self._pos = (self._pos + n) % self.capacity
        self.n_total += n

    # ------------------------------------------------------------------ output
    @property
    def n_held(self) -> int:
        return min(self.n_total, self.capacity)

    def page(self, rows: Sequence[int] | np.ndarray, columns: int, scale_uv: float,
             clip: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """A page of rows ready to draw.

        Returns ``x[m]`` (seconds before the newest sample, <= 0) and ``y[len(rows), m]`` in
        lane units: 1 lane = ``scale_uv`` microvolts, each row centred on 0 and clipped to
        ``+-clip`` lanes. With more samples held than ``2 * columns`` each pixel column
        holds its min and max (peak decimation), else the samples themselves.
        """
        if scale_uv <= 0:
            raise ValueError(f"scale_uv must be > 0 microvolts per lane, got {scale_uv}")
        rows = np.asarray(rows, dtype=int)
        n = self.n_held
        if n == 0 or rows.size == 0:
            return np.zeros(0), np.zeros((rows.size, 0), dtype=np.float32)
        start = (self._pos - n) % self.capacity
        idx = (start + np.arange(n)) % self.capacity if start + n > self.capacity else slice(start, start + n)
        held = self._buf[rows][:, idx]
        t = (np.arange(n) - (n - 1)) / self.sfreq
        cols = max(1, int(columns * n / self.capacity))
        if n > 2 * cols:
            edges = np.linspace(0, n, cols + 1).astype(np.int64)[:-1]
            y = np.empty((rows.size, 2 * cols), dtype=np.float32)
            y[:, 0::2] = np.minimum.reduceat(held, edges, axis=1)
            y[:, 1::2] = np.maximum.reduceat(held, edges, axis=1)
            x = np.repeat(t[edges], 2)
        else:
            y, x = held, t
        y = y * np.float32(1e6 / scale_uv)
        np.clip(y, -clip, clip, out=y)
        return x, y

    def flags(self) -> dict[int, str]:
        """``{channel: "flat" | "saturated"}`` over the last second of raw data."""
        n = min(self.n_total, self._raw.shape[1])
        if n < 2:
            return {}
        raw = self._raw if n == self._raw.shape[1] else self._raw[:, :n]
        lo, hi = raw.min(axis=1), raw.max(axis=1)
        ptp = (hi.astype(np.float64) - lo) * 1e6
        out: dict[int, str] = {}
        for c in np.nonzero(~np.isfinite(ptp) | (ptp < FLAT_UV))[0]:
            out[int(c)] = "flat"
        live = np.isfinite(ptp) & (ptp >= FLAT_UV)
        if self.saturation_v is not None:
            for c in np.nonzero(live & (np.maximum(np.abs(lo), np.abs(hi)) >= self.saturation_v))[0]:
                out[int(c)] = "saturated"
        pinned = np.maximum((raw == hi[:, None]).sum(axis=1), (raw == lo[:, None]).sum(axis=1))
        for c in np.nonzero(live & (pinned >= PINNED_FRACTION * n))[0]:
            out[int(c)] = "saturated"
        return out


def _ring_write(buf: np.ndarray, pos: int, data: np.ndarray) -> None:
    cap = buf.shape[1]
    n = data.shape[1]
    if n > cap:  # only the newest `cap` samples survive; they end where the chunk would have
        pos = (pos + n - cap) % cap
        data, n = data[:, n - cap :], cap
    first = min(n, cap - pos)
    buf[:, pos : pos + first] = data[:, :first]
    if first < n:
        buf[:, : n - first] = data[:, first:]


def next_scale(scale_uv: float, step: int) -> float:
    """The neighbouring value of :data:`SCALES_UV` (``step`` = +1 coarser, -1 finer)."""
    i = int(np.searchsorted(SCALES_UV, scale_uv))
    if i < len(SCALES_UV) and SCALES_UV[i] == scale_uv:
        j = i + step
    else:  # between two values: step to the next one in that direction
        j = i if step > 0 else i - 1
    return float(SCALES_UV[int(np.clip(j, 0, len(SCALES_UV) - 1))])
