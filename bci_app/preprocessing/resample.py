"""Causal polyphase down-sampling for the live path, state kept from chunk to chunk.

An amplifier at 512, 1000 or 2048 Hz feeds a model trained at a lower rate. The stream is
resampled by ``up / down`` (the rate ratio as a fraction) with the anti-aliasing filter of
:func:`scipy.signal.resample_poly` (Kaiser-windowed sinc, 10 zero crossings per side),
applied causally: output sample ``j`` is the filtered signal at input position
``j * down / up`` and needs the input up to ``half / up`` samples later. That wait is the
added delay (:attr:`CausalResampler.delay`, a few to a few tens of milliseconds); the
output is time-stamped at its own position, so markers stay on the right sample and only
the latency grows. Resampling a recording in one call or in any split into chunks gives
the same samples.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import signal

_BLOCK = 256  # output samples computed per step (bounds the gather's memory)


def rate_ratio(sfreq_in: float, sfreq_out: float, max_denominator: int = 1000) -> tuple[int, int]:
    """``(up, down)`` with ``sfreq_out / sfreq_in == up / down`` (ValueError if no small fraction)."""
    ratio = Fraction(sfreq_out / sfreq_in).limit_denominator(max_denominator)
    if ratio <= 0 or abs(float(ratio) * sfreq_in - sfreq_out) > 1e-6 * sfreq_out:
        raise ValueError(
            f"cannot resample {sfreq_in} Hz to {sfreq_out} Hz: the ratio is no fraction with a "
            f"denominator <= {max_denominator}; expected rates such as 2048 -> 1000 or 512 -> 256"
        )
    return ratio.numerator, ratio.denominator


class CausalResampler:
    """Down-sample ``[C, n]`` chunks from ``sfreq_in`` to ``sfreq_out`` causally.

    Parameters
    ----------
    sfreq_in, sfreq_out : float
        Input and output rates; ``sfreq_out`` must not be higher.
    n_channels : int
    half_width : int
        Zero crossings of the sinc on each side of the filter (scipy's default 10); fewer
        means less delay and a wider transition band.
    beta : float
        Kaiser window parameter (scipy's default 5.0).
    """

    def __init__(
        self,
        sfreq_in: float,
        sfreq_out: float,
        n_channels: int,
        *,
        half_width: int = 10,
        beta: float = 5.0,
    ) -> None:
        if sfreq_out > sfreq_in:
            raise ValueError(
                f"cannot up-sample {sfreq_in:g} Hz to {sfreq_out:g} Hz; expected an output rate "
                "at most the input rate"
            )
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        self.sfreq_in, self.sfreq_out = float(sfreq_in), float(sfreq_out)
        self.n_channels = int(n_channels)
        self.up, self.down = rate_ratio(self.sfreq_in, self.sfreq_out)
        self.half = 0 if self.up == self.down else int(half_width) * max(self.up, self.down)
        taps = 2 * self.half + 1
        if taps == 1:  # same rate: a pass-through
            self.n_phase_taps = 1
            self._taps = np.ones((1, 1))
            self.reset()
            return
        h = signal.firwin(taps, 1.0 / max(self.up, self.down), window=("kaiser", beta)) * self.up
        self.n_phase_taps = math.ceil(taps / self.up)
        padded = np.zeros(self.up * self.n_phase_taps)
        padded[:taps] = h
        # phase p, tap i -> h[p + up * i]
        self._taps = padded.reshape(self.n_phase_taps, self.up).T.copy()
        self.reset()

    @property
    def delay(self) -> float:
        """Seconds between an input sample arriving and the outputs it completes."""
        return self.half / (self.up * self.sfreq_in)

    @property
    def is_identity(self) -> bool:
        return self.up == self.down

    def reset(self) -> None:
        """Forget the history (after a gap or a reconnection)."""
        self._buf = np.zeros((self.n_channels, 0))
        self._tbuf = np.zeros(0)
        self._x0 = 0  # input index of _buf[:, 0]
        self._n_in = 0  # input samples seen
        self._j = 0  # next output index

    def process(
        self, data: np.ndarray, timestamps: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add ``data[C, n]`` (and its timestamps); return the outputs now complete.

        Returns ``(y[C, m], timestamps[m])``; without input timestamps, sample ``k`` of the
        input is taken to be at ``k / sfreq_in`` seconds.
        """
        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != self.n_channels:
            raise ValueError(f"chunk has shape {x.shape}; expected ({self.n_channels}, n_samples)")
        n = x.shape[1]
        if timestamps is None:
            timestamps = (self._n_in + np.arange(n)) / self.sfreq_in
        ts = np.asarray(timestamps, dtype=np.float64).ravel()
        if ts.size != n:
            raise ValueError(f"chunk has {n} samples but {ts.size} timestamps")
        if self.is_identity:
            self._n_in += n
            return x, ts
        if n:
            self._buf = np.concatenate([self._buf, x], axis=1)
            self._tbuf = np.concatenate([self._tbuf, ts])
            self._n_in += n
        # output j is complete when input (j * down + half) // up has arrived
        j_end = (self._n_in * self.up - 1 - self.half) // self.down + 1
        if j_end <= self._j:
            return np.zeros((self.n_channels, 0)), np.zeros(0)
        ys, tss = [], []
        for j0 in range(self._j, j_end, _BLOCK):
            y, t = self._outputs(np.arange(j0, min(j_end, j0 + _BLOCK)))
            ys.append(y)
            tss.append(t)
        self._j = j_end
        self._trim()
        return np.concatenate(ys, axis=1), np.concatenate(tss)

    def _outputs(self, js: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = js * self.down + self.half
        n_last, phase = m // self.up, m % self.up
        idx = n_last[:, None] - np.arange(self.n_phase_taps)[None, :]
        idx = np.maximum(idx, 0) - self._x0  # before the first sample: the first sample
        y = np.einsum("cjk,jk->cj", self._buf[:, idx], self._taps[phase])
        q = js * self.down
        k = q // self.up
        ts = self._tbuf[k - self._x0] + (q - k * self.up) / (self.up * self.sfreq_in)
        return y, ts

    def _trim(self) -> None:
        q = self._j * self.down
        keep = min((q + self.half) // self.up - self.n_phase_taps + 1, q // self.up)
        cut = max(0, keep - self._x0)
        if cut:
            self._buf = self._buf[:, cut:]
            self._tbuf = self._tbuf[cut:]
            self._x0 += cut
