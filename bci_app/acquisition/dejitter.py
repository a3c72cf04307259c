"""Time stamps of a regular-rate stream re-fitted against its sample count; the gap rule.

Why: wireless amplifiers send samples in bursts (a radio packet holds several samples), many
drivers stamp samples when they arrive (pylsl ``push_sample``/``push_chunk`` without a time
stamp), the amplifier's crystal runs tens to hundreds of ppm off the computer's clock, and
now and then a packet arrives tens of ms late. Read as they are, the stamps bunch up and
jump, and every jump looks like lost samples.

The model: sample ``k`` (counted from the first one, lost samples included) was taken at
``T(k) = a + k * (1/sfreq + d)`` on the local clock. A stamp is ``T(k)`` plus a delay that is
never negative (arrival stamping: a sample cannot arrive before it was taken), so the stamps
lie on or above that line. :class:`Dejitter` estimates it and returns ``T(k)`` for every
sample, one (fitted) period apart:

- slope (clock drift): a least-squares line through one point per update (its earliest
  sample), weighted with exponential forgetting (``halftime``), shrunk towards the nominal
  rate while little data is in (a ridge prior), as liblsl's dejitter (recursive least
  squares) and pyxdf's ``_jitter_removal`` (least squares per segment) do;
- offset: a low quantile of those points' residuals over the last ``window`` seconds: the
  lower envelope, i.e. the shortest delay seen, where liblsl and pyxdf take the mean delay
  (a mean puts bursts of 9 samples 4 samples late);
- a sample earlier than the line allows proves the fit was built on late samples (a backlog
  at the start, a stall caught up): the fit starts again from it.

Output stamps follow the line, stepping by the fitted period +0.4 / -0.9 periods while they
catch up with a change of the fit: never backwards, never a jump that reads as a gap.

Gap rule (the one place that decides): samples whose stamps lie more than the tolerance
after the line, with no later sample back on it, are held back. A later sample on the line
proves they were only late (a late packet): they are released on the line. If the stamps stay
after the line for ``hold`` seconds of samples (and ``min_arrivals`` updates), samples are
missing, where the lower bound of the delays jumps most: the count jumps by
``round(excess / period)``, the gap is counted (``samples_lost``, ``gaps``) and the output
stamps jump by as many periods. A counter (``counts``: sample numbers from a counter channel,
e.g. BrainFlow's package number) decides gaps exactly instead, without holding anything.
Limits: a delay longer than ``hold`` (the stream stays late while data flows) reads as a gap;
a gap shorter than the tolerance is not seen without a counter (the offset absorbs it).

Consumers (epocher, recorder) read gaps from the stamps with :func:`count_lost`: dejittered
stamps are one period apart except across a gap, where they jump by ``n_lost + 1`` periods.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

logger = logging.getLogger(__name__)

# output stamps step by the fitted period, plus at most 0.4 or minus at most 0.9 periods
# while they follow a change of the fit: never a gap to count_lost (< 1.5), never backwards
_SLEW_UP, _SLEW_DOWN = 0.4, 0.9
# the envelope is taken over `window` seconds, and over at least this many points
_MIN_POINTS = 32


def count_lost(dt: np.ndarray | float, sfreq: float) -> np.ndarray:
    """Samples missing between consecutive timestamps ``dt`` apart (0 when ``dt`` < 1.5 periods)."""
    dt = np.asarray(dt, dtype=np.float64)
    lost = np.rint(dt * sfreq).astype(np.int64) - 1
    return np.where(dt * sfreq >= 1.5, np.maximum(lost, 1), 0)


class Dejitter:
    """Stateful dejitter of one regular-rate stream (see the module docs for the method).

    Parameters
    ----------
    sfreq : float
        The stream's nominal rate (Hz).
    halftime : float
        Seconds after which a point's weight in the drift fit has halved.
    window : float
        Seconds of points (at least 32 points) over which the lower envelope (offset) is taken.
    tolerance : float, optional
        Seconds after the fitted line within which a sample counts as on time: at least this
        (default ``max(0.75 / sfreq, 0.5 ms)``), and up to ``max_tolerance`` as the stream's
        own jitter requires (4 times the median change of delay from one arrival to the
        next, over the last 256 arrivals). Gaps shorter than that are not seen without a counter.
    hold, min_arrivals : float, int
        Seconds of samples that must stay after the line, in at least ``min_arrivals``
        updates, before they are taken as a gap (a delay longer than that reads as a gap).
    max_tolerance : float
        The most the tolerance widens to with the stream's jitter (s).
    quantile : float
        The low quantile of the window's points that sets the offset (robust minimum).
    jitter, drift_prior_ppm : float
        The ridge prior on the drift: a typical stamp jitter (s) and the drift (ppm) expected
        before the data says otherwise.
    max_drift_ppm : float
        The fitted drift is clipped to this (a stream whose real rate is further off its
        nominal rate is mislabelled).
    """

    def __init__(
        self,
        sfreq: float,
        *,
        halftime: float = 30.0,
        window: float = 2.0,
        tolerance: float | None = None,
        hold: float = 0.5,
        min_arrivals: int = 4,
        max_tolerance: float = 0.025,
        quantile: float = 0.01,
        jitter: float = 1e-3,
        drift_prior_ppm: float = 100.0,
        max_drift_ppm: float = 10_000.0,
    ) -> None:
        if not sfreq or sfreq <= 0:
            raise ValueError(
                f"sfreq={sfreq!r}; expected a nominal rate > 0 (irregular streams keep their stamps)"
            )
        for name, v in (("halftime", halftime), ("window", window), ("hold", hold)):
            if v <= 0:
                raise ValueError(f"{name}={v!r}; expected seconds > 0")
        if not 0 <= quantile < 1:
            raise ValueError(f"quantile={quantile!r}; expected 0 <= quantile < 1")
        self.sfreq = float(sfreq)
        self.period = 1.0 / self.sfreq
        self.tolerance = (
            float(tolerance) if tolerance is not None else max(0.75 * self.period, 5e-4)
        )
        if self.tolerance <= 0:
            raise ValueError(f"tolerance={tolerance!r}; expected seconds > 0")
        self.hold_samples = max(1, int(round(hold * self.sfreq)))
        self.min_arrivals = max(1, int(min_arrivals))
        self._tol = self.tolerance
        self._band = self.tolerance  # points further above the line stay out of the drift fit
        self._max_tol = max(self.tolerance, float(max_tolerance))
        self._calls = 0  # updates that brought samples
        self._delays: deque[float] = deque(maxlen=256)  # |change of delay| between arrivals
        self._last_delay: float | None = None
        self._levels: deque[float] = deque(maxlen=64)  # delays of recent on-time arrivals
        self._decay = np.log(2.0) / (halftime * self.sfreq)  # per sample
        self._window = max(1, int(round(window * self.sfreq)))
        self._block = max(1, int(round(0.02 * self.sfreq)))  # window points: one per 20 ms at most
        self._q = float(quantile)
        self._ridge = (jitter / (drift_prior_ppm * 1e-6 * self.period)) ** 2
        self._max_d = max_drift_ppm * 1e-6 * self.period
        self.samples_lost = 0
        # (output index of the first sample after the gap, samples lost), the latest 1000
        self.gaps: deque[tuple[int, int]] = deque(maxlen=1000)
        self.n_out = 0  # samples released
        self.n_restarts = 0
        self.n_refits = 0  # fits started again because a sample came earlier than the line
        self._last_out: float | None = None
        self._last_k = 0
        self._junction = False
        self._new_segment()

    # -- state ----------------------------------------------------------------------------
    def _new_segment(self) -> None:
        self._t0: float | None = None
        self._k_next = 0
        self._count_base: int | None = None
        self._held_ts = np.zeros(0)
        self._held_k = np.zeros(0, dtype=np.int64)
        self._held_call = np.zeros(0, dtype=np.int64)  # the update each held sample came in
        self._held_data: np.ndarray | None = None
        self._S = np.zeros(5)  # weighted sums 1, x, y, x^2, x*y (x relative to _xr)
        self._xr = 0.0
        self._x_last: float | None = None
        self._wx = np.zeros(0)  # points of the lower envelope (x, y)
        self._wy = np.zeros(0)
        self._line: tuple[float, float, float, float] | None = None  # xc, yc, d, c

    def restart(self) -> None:
        """Start a new segment (the stream was lost and comes back): the fit starts again,
        held samples are dropped; the gap to the next output is counted from the stamps."""
        self._new_segment()
        self._junction = self._last_out is not None
        self.n_restarts += 1

    @property
    def n_held(self) -> int:
        """Samples held back (after the line, not yet known to be late or after a gap)."""
        return int(self._held_k.size)

    @property
    def current_tolerance(self) -> float:
        """The tolerance now (s): the floor, widened by the stream's jitter."""
        return self._tol

    @property
    def drift(self) -> float:
        """Fitted period minus nominal period (s per sample)."""
        return self._line[2] if self._line is not None else 0.0

    @property
    def clock_ppm(self) -> float:
        """How fast the stream's clock runs against the local clock (ppm; > 0: fast)."""
        return (self.period / (self.period + self.drift) - 1.0) * 1e6

    @property
    def effective_sfreq(self) -> float:
        return 1.0 / (self.period + self.drift)

    # -- input ----------------------------------------------------------------------------
    def update(self, timestamps: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """Corrected stamps of the samples released by this call (the oldest first).

        Without ``counts``, samples may be held back (see the module docs): the result then
        has fewer stamps than went in, and the next calls release the rest in order; use
        :meth:`process` to hold the data with them. With ``counts`` (increasing sample
        numbers from a counter channel) every sample is released at once.
        """
        return self._run(timestamps, counts, None)[0]

    def process(
        self, data: np.ndarray, timestamps: np.ndarray, counts: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(data[..., n], timestamps[n])`` -> ``(data[..., m], corrected[m])``, the samples
        released (held ones come out of a later call)."""
        ts, out = self._run(timestamps, counts, np.asarray(data))
        return out, ts

    def _run(self, timestamps, counts, data):
        ts = np.asarray(timestamps, dtype=np.float64).ravel()
        n = ts.size
        if data is not None and data.shape[-1] != n:
            raise ValueError(f"chunk has {data.shape[-1]} samples but {n} timestamps")
        if n:
            self._take(ts, counts)
            if self._line is not None and counts is None:
                # the stream's own jitter: how late its arrivals usually are
                k_new = self._held_k[-n:]
                delay = ts - (self._t0 + k_new * self.period) - self._eval(k_new)
                # differences of consecutive delays: a step (a gap, an offset to catch up with)
                # is one large difference, not a wider spread
                delay = float(delay.min())
                if delay <= self._tol:
                    self._levels.append(delay)  # on time: the usual delay, to size gaps
                if self._last_delay is not None:
                    self._delays.append(abs(delay - self._last_delay))
                self._last_delay = delay
                if len(self._delays) >= 8 and self._calls % 8 == 0:  # the median, now and then
                    dl = np.fromiter(self._delays, float, len(self._delays))
                    spread = float(np.partition(dl, dl.size // 2)[dl.size // 2])
                    self._tol = min(max(self.tolerance, 4.0 * spread), self._max_tol)
                    self._band = max(self.tolerance, 2.0 * spread)
            if data is not None:
                self._held_data = (
                    data
                    if self._held_data is None
                    else np.concatenate([self._held_data, data], axis=-1)
                )
        out: list[np.ndarray] = []
        m = 0
        while self._held_k.size:
            k, r = self._held_k, self._held_ts - (self._t0 + self._held_k * self.period)
            if self._line is None:  # the first samples: the earliest one sets the line
                j = int(np.argmin(r))
                self._line = (float(k[j]), float(r[j]), 0.0, 0.0)
            e = r - self._eval(k)
            if e.min() < -self._tol:
                # a sample came earlier than the line allows: what the fit was built on came late
                # (a backlog at the start, a stall caught up): build it again from here
                self._reset_fit()
                j = int(np.argmin(r))
                self._line = (float(k[j]), float(r[j]), 0.0, 0.0)
                e = r - self._eval(k)
            if counts is not None:
                n_ok = k.size
            else:
                tail_min = np.minimum.accumulate(e[::-1])[::-1]  # non-decreasing
                n_ok = int(np.searchsorted(tail_min, self._tol, side="right"))
            if n_ok:
                out.append(self._release(n_ok, e))
                m += n_ok
            if (
                self._held_k.size < self.hold_samples
                or self._calls - int(self._held_call[0]) + 1 < self.min_arrivals
            ):
                break
            # still after the line after `hold` seconds of samples: samples are missing, where
            # the lower bound of the delays jumps most (what came before it was only late)
            late = tail_min[n_ok:]
            at = int(np.argmax(np.diff(late, prepend=0.0)))
            if at:
                out.append(self._release(at, e[n_ok:], fit=False))
                m += at
            g = self._gap_size(e[n_ok + at :], float(late[at]))
            self._held_k = self._held_k + g
            self._k_next += g
            self._gap(self.n_out, g)
        stamps = np.concatenate(out) if out else np.zeros(0)
        released = None
        if data is not None:
            held = self._held_data
            if held is None:
                released = data[..., :0]
            else:
                released = held[..., :m]
                self._held_data = held[..., m:] if m < held.shape[-1] else None
        return stamps, released

    def _take(self, ts: np.ndarray, counts) -> None:
        """Append new stamps with their sample counts (gaps in ``counts`` counted here)."""
        n = ts.size
        self._calls += 1
        if self._t0 is None:
            self._t0 = float(ts[0])
        if counts is None:
            k = self._k_next + np.arange(n, dtype=np.int64)
        else:
            c = np.asarray(counts, dtype=np.int64).ravel()
            if c.size != n:
                raise ValueError(f"{c.size} counts for {n} timestamps; expected one per sample")
            if self._count_base is None:
                self._count_base = int(c[0]) - self._k_next
            k = c - self._count_base
            step = np.diff(np.concatenate([[self._k_next - 1], k]))
            if (step < 1).any():
                raise ValueError(
                    "counts must increase from sample to sample; restart() after a reset"
                )
            for i in np.nonzero(step > 1)[0]:
                self._gap(self.n_out + self.n_held + int(i), int(step[i]) - 1)
        self._k_next = int(k[-1]) + 1
        self._held_ts = np.concatenate([self._held_ts, ts])
        self._held_k = np.concatenate([self._held_k, k])
        self._held_call = np.concatenate([self._held_call, np.full(n, self._calls)])

    def _gap_size(self, excess: np.ndarray, lowest: float) -> int:
        """Samples missing before the held samples (``excess``: theirs above the line): the
        median delay of their arrivals minus that of the on-time arrivals before, in periods
        (medians: the same jitter on both sides cancels; ``lowest``, the least excess, when
        no on-time arrival is known yet)."""
        per = self.period + self.drift
        calls = self._held_call
        if self._levels and calls.size == excess.size:
            starts = np.flatnonzero(np.diff(calls, prepend=calls[0] - 1))
            post = float(np.median(np.minimum.reduceat(excess, starts)))
            g = int(round((post - float(np.median(self._levels))) / per))
        else:
            g = int(round(lowest / per))
        return max(1, g)

    def _gap(self, index: int, n_lost: int) -> None:
        self.samples_lost += n_lost
        self.gaps.append((index, n_lost))
        logger.debug("gap of %d samples before sample %d", n_lost, index)

    # -- fit ------------------------------------------------------------------------------
    def _reset_fit(self) -> None:
        self._S = np.zeros(5)
        self._x_last = None
        self._wx = np.zeros(0)
        self._wy = np.zeros(0)
        self._line = None
        self.n_refits += 1

    def _add_point(self, x: float, y: float, excess: float = 0.0) -> None:
        x, y = float(x), float(y)
        S = self._S
        if self._x_last is None:
            self._xr = x
        elif x > self._x_last:
            S *= np.exp(-(x - self._x_last) * self._decay)
        xs = x - self._xr
        if xs > 1e6:  # keep x small: re-centre the sums
            S[4] -= xs * S[2]
            S[3] -= 2 * xs * S[1] - xs * xs * S[0]
            S[1] -= xs * S[0]
            self._xr, xs = x, 0.0
        if excess <= self._band:  # late points (a late packet and those behind it) stay out
            S += (1.0, xs, y, xs * xs, xs * y)
        self._x_last = x if self._x_last is None else max(x, self._x_last)
        # points of the lower envelope: at most one per block, the earliest
        d = self._line[2] if self._line is not None else 0.0
        if self._wx.size and x - self._wx[-1] < self._block:
            if y - d * x < self._wy[-1] - d * self._wx[-1]:
                self._wx[-1], self._wy[-1] = x, y
        else:
            self._wx = np.append(self._wx, x)
            self._wy = np.append(self._wy, y)
        keep = self._wx >= x - self._window
        keep[-_MIN_POINTS:] = True  # big chunks: fewer points per second, a longer window
        if not keep.all():
            self._wx, self._wy = self._wx[keep], self._wy[keep]
        self._refit()

    def _refit(self) -> None:
        s0, sx, sy, sxx, sxy = self._S
        if s0 > 1e-12:
            xm, ym = sx / s0, sy / s0
            den = max(sxx - sx * xm, 0.0) + self._ridge
            d = float(np.clip((sxy - sx * ym) / den, -self._max_d, self._max_d)) if den > 0 else 0.0
        else:  # no point in the drift fit yet: the nominal rate, the level from the envelope
            xm, ym, d = 0.0, 0.0, 0.0
        xc = self._xr + xm
        res = self._wy - (ym + d * (self._wx - xc))
        i = int(self._q * res.size)
        c = float(np.partition(res, i)[i])
        self._line = (xc, ym, d, c)

    def _eval(self, k: np.ndarray) -> np.ndarray:
        xc, yc, d, c = self._line
        return yc + c + d * (k - xc)

    # -- output ---------------------------------------------------------------------------
    def _release(self, m: int, e: np.ndarray, fit: bool = True) -> np.ndarray:
        k, r = self._held_k[:m], self._held_ts[:m] - (self._t0 + self._held_k[:m] * self.period)
        if fit:  # the earliest of the released samples feeds the fit
            j = int(np.argmin(e[:m]))
            self._add_point(k[j], r[j], float(e[j]))
        target = self._t0 + k * self.period + self._eval(k)
        out = self._smooth(k, target)
        self._held_k, self._held_ts = self._held_k[m:], self._held_ts[m:]
        self._held_call = self._held_call[m:]
        self.n_out += m
        return out

    def _smooth(self, k: np.ndarray, target: np.ndarray) -> np.ndarray:
        """``target``, except that consecutive outputs step by the fitted period (times the
        count step) + 0.4 / - 0.9 periods, so that a change of the fit never reads as a gap
        nor goes backwards."""
        out = target.copy()
        if self._last_out is None or self._junction:
            if self._junction:  # after a restart: the jump from the last output is the loss
                lost = int(count_lost(target[0] - self._last_out, self.sfreq))
                if lost:
                    self._gap(self.n_out, lost)
                self._junction = False
            last, last_k, start = float(target[0]), int(k[0]), 1
        else:
            last, last_k, start = self._last_out, self._last_k, 0
        if start < k.size:
            per = self.period + self.drift
            nominal = np.diff(np.concatenate([[last_k], k[start:]])) * per
            dt = np.diff(np.concatenate([[last], target[start:]]))
            up, down = _SLEW_UP * self.period, _SLEW_DOWN * self.period
            if ((dt - nominal > up) | (nominal - dt > down)).any():
                o = last
                for i in range(start, k.size):
                    step = nominal[i - start]
                    o = min(max(target[i], o + step - down), o + step + up)
                    out[i] = o
        self._last_out, self._last_k = float(out[-1]), int(k[-1])
        return out
