"""Channels by name and units to volts: the same rules for live streams and recorded files.

A stream or file may carry more channels than a model needs (EOG, AUX, trigger, counters),
in any order, and in microvolts. :class:`ChannelMap` says which columns to keep (by name,
case-insensitively, in the wanted order) and what to multiply each by to get volts. The
live sources (:mod:`bci_app.acquisition.conform`) and the offline loaders build one with
:meth:`ChannelMap.build` and apply it, so the same data gives the same Trials.

Units are read from channel metadata (LSL ``desc/channels/channel/unit``, XDF, BrainFlow's
microvolts): ``V``/``volts``, ``mV``, ``uV``/``µV``/``microvolts``, ``nV``, and mne-lsl's
power-of-ten exponents (``"0"`` = V, ``"-6"`` = µV). ``"none"`` marks a channel without a
physical unit (a trigger); it is never scaled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: what ``--units`` accepts
UNIT_CHOICES = ("uV", "mV", "V")

_VOLTS = {
    "v": 1.0, "volt": 1.0, "volts": 1.0,
    "mv": 1e-3, "millivolt": 1e-3, "millivolts": 1e-3,
    "uv": 1e-6, "\u00b5v": 1e-6, "\u03bcv": 1e-6, "microvolt": 1e-6, "microvolts": 1e-6,
    "nv": 1e-9, "nanovolt": 1e-9, "nanovolts": 1e-9,
}  # fmt: skip
_DIMENSIONLESS = {"none", "n/a", "na", "unitless", "dimensionless", "au", "a.u."}

#: above this median per-channel standard deviation, "volts" is implausible for EEG (1 mV)
PLAUSIBLE_VOLTS_STD = 1e-3


def volts_per_unit(unit: str | None) -> float | None:
    """Volts per unit of ``unit``: ``"uV"`` -> 1e-6; None for a missing or empty unit.

    Raises ValueError for a unit that is no voltage (``"counts"``); ``"none"`` and other
    dimensionless markers give 1.0 (such channels are never scaled).
    """
    if unit is None:
        return None
    u = str(unit).strip()
    if not u:
        return None
    key = u.lower().replace(" ", "")
    if key in _VOLTS:
        return _VOLTS[key]
    if key in _DIMENSIONLESS:
        return 1.0
    try:  # mne-lsl writes FIFF unit multipliers: "0" = V, "-6" = uV
        exp = int(key)
    except ValueError:
        pass
    else:
        if -12 <= exp <= 3:
            return float(10.0**exp)
    raise ValueError(
        f"unit {unit!r} is not a voltage unit; expected one of V, mV, uV (µV, microvolts), "
        "nV, or a power-of-ten exponent such as -6; pass --units to say what the data is in"
    )


def pick_indices(
    available: Sequence[str], wanted: Sequence[str], what: str = "the stream"
) -> list[int]:
    """Indices into ``available`` of each name of ``wanted``, matched case-insensitively.

    Raises ValueError naming every wanted channel that is missing (or that matches two
    channels of ``available`` that differ only in case).
    """
    index: dict[str, list[int]] = {}
    for i, name in enumerate(available):
        index.setdefault(str(name).strip().lower(), []).append(i)
    missing, ambiguous, out = [], [], []
    for name in wanted:
        hits = index.get(str(name).strip().lower(), [])
        if not hits:
            missing.append(name)
        elif len(hits) > 1:
            ambiguous.append(f"{name} ({', '.join(available[i] for i in hits)})")
        else:
            out.append(hits[0])
    if missing or ambiguous:
        problems = []
        if missing:
            shown_missing = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
            problems.append(f"lacks {len(missing)} channel(s) the model needs: {shown_missing}")
        if ambiguous:
            problems.append(f"has several channels for {'; '.join(ambiguous)}")
        shown = ", ".join(available[:64]) + (" ..." if len(available) > 64 else "")
        raise ValueError(
            f"{what} {' and '.join(problems)}; it has {len(available)} channels: {shown}. "
            "Connect the stream of the montage the bundle was trained on, or train a bundle "
            "for this montage"
        )
    return out


@dataclass(frozen=True)
class ChannelMap:
    """Which columns of the input to keep, in which order, and their factors to volts.

    Attributes
    ----------
    indices : tuple of int
        Input channel of each output channel.
    ch_names : tuple of str
        Output channel names (the wanted spelling when picked by name).
    scales : ndarray
        Volts per input unit of each output channel.
    unknown_units : tuple of str
        Output channels whose unit was unknown and read as volts (check their amplitudes
        with :func:`implausible_volts`).
    n_input : int
        Channels of the input (-1: unknown).
    """

    indices: tuple[int, ...]
    ch_names: tuple[str, ...]
    scales: np.ndarray
    unknown_units: tuple[str, ...] = ()
    n_input: int = -1

    @classmethod
    def build(
        cls,
        available: Sequence[str],
        units: Sequence[str | None] | None = None,
        wanted: Sequence[str] | None = None,
        *,
        units_override: str | None = None,
        what: str = "the stream",
    ) -> ChannelMap:
        """Pick ``wanted`` (all channels when None) from ``available`` and find their units.

        ``units`` holds one unit string (or None) per available channel. ``units_override``
        (``"uV"``, ``"mV"``, ``"V"``) replaces them for every kept channel. A kept channel whose
        unit is no voltage is an error when it was asked for by name, and kept unscaled
        otherwise (an AUX channel recorded as it is).
        """
        available = [str(a) for a in available]
        if units is not None and len(units) != len(available):
            raise ValueError(
                f"{what} has {len(available)} channels but {len(units)} units; expected one each"
            )
        if wanted is None:
            idx = list(range(len(available)))
            names = list(available)
        else:
            idx = pick_indices(available, wanted, what)
            names = [str(w) for w in wanted]
        override = None
        if units_override is not None:
            if units_override not in UNIT_CHOICES:
                raise ValueError(
                    f"units={units_override!r}; expected one of {', '.join(UNIT_CHOICES)}"
                )
            override = volts_per_unit(units_override)
        scales, unknown = np.ones(len(idx)), []
        for j, (i, name) in enumerate(zip(idx, names, strict=True)):
            if override is not None:
                scales[j] = override
                continue
            unit = None if units is None else units[i]
            try:
                factor = volts_per_unit(unit)
            except ValueError as err:
                if wanted is not None:
                    raise ValueError(f"{what}: channel {name}: {err}") from None
                logger.info("%s: channel %s in %r is kept unscaled", what, name, unit)
                factor = 1.0
            if factor is None:
                unknown.append(name)
                factor = 1.0
            scales[j] = factor
        return cls(tuple(idx), tuple(names), scales, tuple(unknown), len(available))

    def __post_init__(self) -> None:
        identity = (
            self.n_input == len(self.indices)
            and self.indices == tuple(range(self.n_input))
            and bool(np.all(self.scales == 1.0))
        )
        object.__setattr__(self, "_identity", identity)

    @property
    def is_identity(self) -> bool:
        """True when nothing is picked away, reordered or scaled."""
        return self._identity

    def apply(self, data: np.ndarray, n_input: int | None = None) -> np.ndarray:
        """``data[C_in, n]`` -> float64 ``[C_out, n]`` in volts (channels picked, scaled)."""
        data = np.asarray(data)
        n_input = self.n_input if n_input is None and self.n_input >= 0 else n_input
        if data.ndim != 2 or (n_input is not None and data.shape[0] != n_input):
            raise ValueError(
                f"data has shape {data.shape}; expected ({n_input or 'C'}, n_samples) "
                "with the input's channels as rows"
            )
        if self.is_identity:
            return np.asarray(data, dtype=np.float64)
        out = np.asarray(data[list(self.indices)], dtype=np.float64)
        return out * self.scales[:, None]


def implausible_volts(data: np.ndarray, threshold: float = PLAUSIBLE_VOLTS_STD) -> float | None:
    """The median per-channel standard deviation of ``data[C, n]`` when it is too large for
    EEG in volts (above ``threshold``, 1 mV), else None. NaNs are ignored."""
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] < 2:
        return None
    with np.errstate(all="ignore"):
        std = np.nanstd(data, axis=1)
    std = std[np.isfinite(std)]
    if std.size == 0:
        return None
    med = float(np.median(std))
    return med if med > threshold else None


def units_hint(what: str, std: float) -> str:
    """The warning for a stream without units whose amplitudes are implausible for volts."""
    likely = "uV" if std > 0.5 else "mV"
    return (
        f"{what} declares no channel units and its amplitudes (median channel standard "
        f"deviation {std:.3g}) are implausible for volts (EEG is ~1e-5 V); it is probably in "
        f"{'microvolts' if likely == 'uV' else 'millivolts'}: pass --units {likely} (or have the "
        "amplifier's LSL app write desc/channels/channel/unit)"
    )
