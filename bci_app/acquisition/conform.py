"""From what a stream sends to what the consumer needs: channels by name, volts, rate.

A live source builds a :class:`StreamConformer` when it connects, from the stream's
channel names, units and rate and the consumer's needs (a bundle's channel names and rate,
or nothing: "take the stream as it is"). Picking and units are
:class:`bci_app.preprocessing.ChannelMap` (shared with the offline loaders); a higher rate
is down-sampled causally (:class:`bci_app.preprocessing.CausalResampler`), a lower one is
an error naming both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from bci_app.preprocessing.channels import ChannelMap, implausible_volts, units_hint
from bci_app.preprocessing.resample import CausalResampler

logger = logging.getLogger(__name__)


def check_rate(what: str, sfreq: float, wanted: float | None) -> None:
    """ValueError naming both rates when ``sfreq`` is below the ``wanted`` one."""
    if wanted is not None and sfreq < wanted * (1 - 1e-9):
        raise ValueError(
            f"{what} is sampled at {sfreq:g} Hz, below the {wanted:g} Hz the bundle needs; "
            "a lower rate cannot be used (higher rates are resampled): set the amplifier to "
            f"at least {wanted:g} Hz or train a bundle at {sfreq:g} Hz"
        )


class StreamConformer:
    """Pick, scale to volts and down-sample the chunks of one connected stream.

    Parameters
    ----------
    ch_names, sfreq, units
        The stream's channel names, nominal rate and per-channel units (None: unknown).
    want_ch_names, want_sfreq : optional
        What the consumer needs; None takes the stream's.
    units_override : ``"uV"``, ``"mV"``, ``"V"`` or None
        Replaces the stream's units (``--units``).
    what : str
        How messages name the stream.
    check_seconds : float
        How much data the amplitude check of channels without units looks at.

    Attributes
    ----------
    ch_names, sfreq : the output's channels and rate
    delay : float
        Seconds of latency the resampler adds (0 when the rate is used as is).
    warning : str or None
        The units warning, once it was given.
    """

    def __init__(
        self,
        ch_names: Sequence[str],
        sfreq: float,
        units: Sequence[str | None] | None = None,
        *,
        want_ch_names: Sequence[str] | None = None,
        want_sfreq: float | None = None,
        units_override: str | None = None,
        what: str = "the stream",
        check_seconds: float = 1.0,
    ) -> None:
        check_rate(what, sfreq, want_sfreq)
        self.what = what
        self.n_input = len(ch_names)
        self.map = ChannelMap.build(
            list(ch_names), units, want_ch_names, units_override=units_override, what=what
        )
        self.ch_names = list(self.map.ch_names)
        self.resampler = None
        if want_sfreq is not None and sfreq > want_sfreq * (1 + 1e-9):
            self.resampler = CausalResampler(sfreq, want_sfreq, len(self.ch_names))
            logger.warning(  # the user should know: it is latency on every trial
                "%s: resampling %g Hz -> %g Hz (causal polyphase) adds %.1f ms of delay",
                what, sfreq, want_sfreq, 1000 * self.resampler.delay,
            )  # fmt: skip
        self.sfreq = float(want_sfreq) if want_sfreq is not None else float(sfreq)
        self.delay = self.resampler.delay if self.resampler is not None else 0.0
        names = set(self.map.unknown_units)
        self._check_rows = [i for i, n in enumerate(self.ch_names) if n in names]
        self._check_n = max(2, int(round(check_seconds * sfreq)))
        self._check_buf: list[np.ndarray] = []
        self.checked = not self._check_rows
        self.warning: str | None = None

    @property
    def is_identity(self) -> bool:
        return self.map.is_identity and self.resampler is None and self.checked

    def process(self, data: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``data[C_in, n]`` in the stream's units -> ``(data[C_out, m] volts, timestamps[m])``."""
        x = self.map.apply(data, self.n_input)
        if not self.checked:
            self._check(x)
        if self.resampler is not None:
            return self.resampler.process(x, timestamps)
        return x, np.asarray(timestamps, dtype=np.float64)

    def _check(self, x: np.ndarray) -> None:
        self._check_buf.append(x[self._check_rows])
        if sum(b.shape[1] for b in self._check_buf) < self._check_n:
            return
        std = implausible_volts(np.concatenate(self._check_buf, axis=1))
        self._check_buf = []
        self.checked = True
        if std is not None:
            self.warning = units_hint(self.what, std)
            logger.warning(self.warning)
