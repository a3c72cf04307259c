"""Typed settings, loaded from TOML files and overridden by command-line flags.

Every section is a dataclass; ``load_config(path)`` reads a TOML file whose tables
are named like the fields of :class:`AppConfig` (``[epoch]``, ``[acquisition]``...).
Unknown keys are an error that names the key and the allowed ones.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any


@dataclass
class EpochConfig:
    """How EEG windows are cut and pre-processed (the seed paper's window by default)."""

    tmin: float = 0.020  # s after the marker
    tmax: float = 0.460  # s after the marker (window = [tmin, tmax), 440 samples at 1 kHz)
    sfreq: float = 1000.0
    n_channels: int = 128
    l_freq: float | None = 1.0  # causal band-pass (Butterworth, SOS), None to skip
    h_freq: float | None = 40.0
    filter_order: int = 4
    notch: float | None = 50.0  # line frequency; None to skip
    buffer_seconds: float = 10.0  # ring buffer length

    @property
    def n_times(self) -> int:
        return int(round((self.tmax - self.tmin) * self.sfreq))


@dataclass
class AcquisitionConfig:
    source: str = "lsl"  # "lsl[:NAME]" | "brainflow:BOARD"
    markers: str | None = None  # marker stream name (None: first stream of type Markers)
    marker_pattern: str = r"^stim/(?P<id>.+)$"
    connect_timeout: float = 10.0
    reconnect: bool = True
    brainflow_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferenceConfig:
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    dtype: str = "auto"  # "auto" (fp16 on GPU, fp32 on CPU) | "float32" | "float16" | "bfloat16"
    queue_size: int = 8
    policy: str = "drop_oldest"  # "drop_oldest" | "drop_newest" | "block"
    steps: int | None = None  # refiner steps (None: the bundle's default)
    strength: float | None = None  # img2img strength (None: the bundle's default)
    warmup: int = 2
    compile: bool = False
    tiny_vae: bool = True
    cpu_threads: int | None = None  # None: all cores but one (leave one to the GUI)


@dataclass
class SimulatorConfig:
    snr: float = 1.0  # multiplies the evoked responses; 1.0 is the calibrated default
    design: str = "rapid"  # "rapid" | "block"
    seed: int = 0
    on: float = 0.5
    off: float = 0.0
    line_freq: float = 50.0


@dataclass
class AppConfig:
    epoch: EpochConfig = field(default_factory=EpochConfig)
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)


def _update(obj: Any, values: dict[str, Any], where: str) -> Any:
    allowed = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in allowed:
            raise ValueError(
                f"unknown setting '{where}{key}'; allowed: {', '.join(sorted(allowed))}"
            )
        current = getattr(obj, key)
        if is_dataclass(current) and isinstance(value, dict):
            changes[key] = _update(current, value, f"{where}{key}.")
        else:
            changes[key] = value
    return replace(obj, **changes)


def load_config(path: str | Path | None = None, **overrides: Any) -> AppConfig:
    """Read ``path`` (TOML) over the defaults, then apply ``overrides`` (nested dicts)."""
    cfg = AppConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist; expected a TOML file")
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        known = {f.name for f in fields(AppConfig)}
        cfg = _update(cfg, {k: v for k, v in data.items() if k in known}, "")
    if overrides:
        cfg = _update(cfg, overrides, "")
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)
