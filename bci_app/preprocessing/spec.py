"""What the epocher must produce: channels, rate, window, filters, normalisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np


@dataclass
class PreprocessingSpec:
    """Channels, sampling rate, window, causal filters and normalisation of the EEG windows.

    The window is ``[tmin, tmax)`` seconds after the marker, ``n_times`` samples long.
    ``norm_mean``/``norm_std`` (one value per channel, in the units after filtering) turn
    filtered windows into per-channel z-scores; ``None`` leaves them unnormalised.
    """

    sfreq: float = 1000.0
    ch_names: list[str] = field(default_factory=list)
    tmin: float = 0.020
    tmax: float = 0.460
    l_freq: float | None = 1.0
    h_freq: float | None = 40.0
    filter_order: int = 4
    notch: float | None = 50.0
    norm_mean: list[float] | None = None
    norm_std: list[float] | None = None

    def __post_init__(self) -> None:
        if self.sfreq <= 0:
            raise ValueError(f"sfreq must be > 0 Hz, got {self.sfreq}")
        if self.tmax <= self.tmin:
            raise ValueError(f"tmax must be > tmin, got tmin={self.tmin}, tmax={self.tmax}")
        self.ch_names = list(self.ch_names)
        n = len(self.ch_names)
        for name in ("norm_mean", "norm_std"):
            value = getattr(self, name)
            if value is None:
                continue
            value = [float(v) for v in np.asarray(value, dtype=float).ravel()]
            if n and len(value) != n:
                raise ValueError(
                    f"{name} has {len(value)} values but the spec has {n} channels; "
                    "expected one value per channel"
                )
            setattr(self, name, value)
        if (self.norm_mean is None) != (self.norm_std is None):
            raise ValueError("norm_mean and norm_std must be given together (or both None)")
        if self.norm_std is not None and min(self.norm_std) <= 0:
            raise ValueError("norm_std must be > 0 for every channel")

    @property
    def n_channels(self) -> int:
        return len(self.ch_names)

    @property
    def n_times(self) -> int:
        """Samples per window: ``round((tmax - tmin) * sfreq)``."""
        return int(round((self.tmax - self.tmin) * self.sfreq))

    @property
    def start_offset(self) -> int:
        """Samples from the onset sample to the window's first sample: ``round(tmin * sfreq)``."""
        return int(round(self.tmin * self.sfreq))

    @property
    def has_norm(self) -> bool:
        return self.norm_mean is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessingSpec:
        allowed = {f.name for f in fields(cls)}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(
                f"unknown PreprocessingSpec keys {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        return cls(**d)

    @classmethod
    def from_epoch_config(cls, cfg: Any, ch_names: list[str] | None = None) -> PreprocessingSpec:
        """Build from :class:`bci_app.config.EpochConfig` (channels named EEG000... if not given)."""
        if ch_names is None:
            ch_names = [f"EEG{i:03d}" for i in range(cfg.n_channels)]
        return cls(
            sfreq=cfg.sfreq,
            ch_names=list(ch_names),
            tmin=cfg.tmin,
            tmax=cfg.tmax,
            l_freq=cfg.l_freq,
            h_freq=cfg.h_freq,
            filter_order=cfg.filter_order,
            notch=cfg.notch,
        )


def normalise(x: np.ndarray, spec: PreprocessingSpec) -> np.ndarray:
    """Per-channel ``(x - mean) / std`` over ``x[..., C, T]``; float32 (unchanged if no norm)."""
    x = np.asarray(x)
    if not spec.has_norm:
        return x.astype(np.float32, copy=False)
    mean = np.asarray(spec.norm_mean, dtype=np.float64)
    std = np.asarray(spec.norm_std, dtype=np.float64)
    if x.shape[-2] != mean.size:
        raise ValueError(
            f"data has {x.shape[-2]} channels but the normalisation has {mean.size}; "
            "expected the same channels as the spec"
        )
    return ((x - mean[:, None]) / std[:, None]).astype(np.float32)


def compute_norm(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over trials and time of ``X[N, C, T]`` (NaN ignored, std floored at 1e-12)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"X must have shape (n_trials, n_channels, n_times), got {X.shape}")
    mean = np.nanmean(X, axis=(0, 2))  # NaN rows are incomplete windows
    std = np.nanstd(X, axis=(0, 2))
    return mean, np.maximum(std, 1e-12)
