"""Causal, stateful band-pass + notch filtering (the same filter live and offline)."""

from __future__ import annotations

import numpy as np
from scipy import signal

from bci_app.preprocessing.spec import PreprocessingSpec


def design_sos(
    sfreq: float,
    l_freq: float | None,
    h_freq: float | None,
    order: int = 4,
    notch: float | None = None,
    notch_q: float = 30.0,
) -> np.ndarray | None:
    """Second-order sections of the Butterworth band-pass (or high/low-pass) and the notch."""
    nyq = sfreq / 2.0
    for name, f in (("l_freq", l_freq), ("h_freq", h_freq), ("notch", notch)):
        if f is not None and not 0 < f < nyq:
            raise ValueError(f"{name}={f} Hz is outside (0, {nyq}) Hz, the range at sfreq={sfreq}")
    sections = []
    if l_freq is not None and h_freq is not None:
        if l_freq >= h_freq:
            raise ValueError(f"l_freq ({l_freq}) must be < h_freq ({h_freq})")
        sections.append(signal.butter(order, [l_freq, h_freq], "bandpass", fs=sfreq, output="sos"))
    elif l_freq is not None:
        sections.append(signal.butter(order, l_freq, "highpass", fs=sfreq, output="sos"))
    elif h_freq is not None:
        sections.append(signal.butter(order, h_freq, "lowpass", fs=sfreq, output="sos"))
    if notch is not None:
        b, a = signal.iirnotch(notch, notch_q, fs=sfreq)
        sections.append(signal.tf2sos(b, a))
    if not sections:
        return None
    return np.vstack(sections)


class CausalFilter:
    """Stateful SOS filter over ``[C, n]`` chunks; the state is carried from chunk to chunk.

    Filtering a recording in one call or in any split into chunks gives the same output.
    The state starts at the steady state for the first sample of each channel (as
    ``scipy.signal.sosfilt_zi`` scaled by it), which avoids the large step response a
    DC offset would cause. Non-finite samples are filtered as the previous finite value
    so that one NaN never poisons the state; callers track them separately.

    Parameters
    ----------
    spec : PreprocessingSpec, optional
        Takes sfreq, channel count, l_freq, h_freq, filter_order and notch from it.
    sfreq, n_channels, l_freq, h_freq, order, notch
        The same, given one by one (used when ``spec`` is None).
    """

    def __init__(
        self,
        spec: PreprocessingSpec | None = None,
        *,
        sfreq: float | None = None,
        n_channels: int | None = None,
        l_freq: float | None = None,
        h_freq: float | None = None,
        order: int = 4,
        notch: float | None = None,
    ) -> None:
        if spec is not None:
            sfreq, n_channels = spec.sfreq, spec.n_channels
            l_freq, h_freq, order, notch = spec.l_freq, spec.h_freq, spec.filter_order, spec.notch
        if sfreq is None or n_channels is None:
            raise ValueError("CausalFilter needs a spec, or sfreq and n_channels")
        self.sfreq = float(sfreq)
        self.n_channels = int(n_channels)
        self.sos = design_sos(self.sfreq, l_freq, h_freq, order, notch)
        self._zi: np.ndarray | None = None
        self._last = np.zeros(self.n_channels)

    @property
    def is_identity(self) -> bool:
        return self.sos is None

    def reset(self) -> None:
        self._zi = None
        self._last = np.zeros(self.n_channels)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Filter ``chunk[C, n]`` continuing from the previous chunk; returns float64 ``[C, n]``."""
        x = np.array(chunk, dtype=np.float64)  # copy: we may patch non-finite values
        if x.ndim != 2 or x.shape[0] != self.n_channels:
            raise ValueError(f"chunk has shape {x.shape}; expected ({self.n_channels}, n_samples)")
        if x.shape[1] == 0:
            return x
        bad = ~np.isfinite(x)
        if bad.any():
            for c in np.nonzero(bad.any(axis=1))[0]:
                row, last = x[c], self._last[c]
                for i in np.nonzero(~np.isfinite(row))[0]:
                    row[i] = row[i - 1] if i > 0 else last
        self._last = x[:, -1].copy()
        if self.sos is None:
            return x
        if self._zi is None:
            zi0 = signal.sosfilt_zi(self.sos)  # (n_sections, 2)
            self._zi = zi0[:, None, :] * x[None, :, 0, None]  # (n_sections, C, 2)
        y, self._zi = signal.sosfilt(self.sos, x, axis=1, zi=self._zi)
        return y
