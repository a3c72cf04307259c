"""Typed settings, loaded from TOML files and overridden by command-line flags.

Every table of a settings file is a dataclass. A file may hold the app's tables
(``[epoch]``, ``[acquisition]``, ``[inference]``) and the training
tables of ``bci-app train`` (``[train]``, ``[data]``, ``[encoder]``, ``[gan]``,
``[semantic]``, ``[refiner]``, ``[classifier]``, ``[baseline]``, see
:class:`TrainConfig`). :func:`load_config` reads both kinds into one :class:`AppConfig`
(the training tables under ``.training``); :func:`load_train_config` reads only the
training tables. An unknown table or key anywhere is a ``ValueError`` that names it and
the allowed ones; the few keys of :data:`RETIRED` (accepted once, never read) are skipped
with a warning.

A few sub-tables are free-form because the class they configure validates them itself:
``encoder.kwargs`` (the encoder's constructor), ``semantic.text_encoder``
(:func:`bci_app.models.text.build_text_encoder`), ``refiner.train``
(:class:`bci_app.training.demo_refiner.DemoRefinerConfig`) and ``classifier.config``
(:class:`bci_app.training.classifier.ClassifierConfig`).
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from bci_app.file_errors import reading

T = TypeVar("T")
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the app
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

    @property
    def n_times(self) -> int:
        return int(round((self.tmax - self.tmin) * self.sfreq))


@dataclass
class AcquisitionConfig:
    """How the EEG source is opened (the source and marker streams themselves are named on
    the command line: ``--source``, ``--markers``, ``--marker-pattern``)."""

    brainflow_params: dict[str, Any] = field(default_factory=dict)


# settings that earlier versions accepted but nothing ever read: a file that sets them still
# loads, with a warning that says what to use instead
RETIRED = {
    "acquisition.source": "pass --source",
    "acquisition.markers": "pass --markers",
    "acquisition.marker_pattern": "pass --marker-pattern",
    "acquisition.connect_timeout": "a source waits 10 s for its stream",
    "acquisition.reconnect": "LSL sources always reconnect",
    "epoch.buffer_seconds": "the ring buffer is sized from the bundle's window",
}


@dataclass
class InferenceConfig:
    """How the live path runs the bundle (read by ``bci_app.session``)."""

    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    dtype: str = "auto"  # "auto" (fp16 on GPU, fp32 on CPU) | "float32" | "float16" | "bfloat16"
    queue_size: int = 8
    policy: str = "drop_oldest"  # "drop_oldest" | "drop_newest" | "block"
    steps: int | None = None  # refiner steps (None: the bundle's default)
    strength: float | None = None  # img2img strength (None: the bundle's default)
    warmup: int = 2
    cpu_threads: int | None = None  # None: all cores but one (leave one to the GUI)


# ----------------------------------------------------------------------------- training
@dataclass
class RunSettings:
    """``[train]``: what a ``bci-app train`` run trains on (flags override these)."""

    seed: int = 0
    data: str = "synthetic:2000"
    keep_checkpoints: bool = True  # False: drop BUNDLE/checkpoints once every stage is done
    device: str = "auto"


@dataclass
class DataSettings:
    """``[data]``: the split by image (the same rule ``evaluate`` reads from the bundle)."""

    split_seed: int = 0
    test_frac: float = 0.2
    val_frac: float = 0.1
    # fewest training trials a class needs; a class below it, or one with validation trials but
    # none in training, stops `train` with the list (0: train anyway, recorded in the bundle)
    min_trials_per_class: int = 5
    # classes (names, or int indices) no model component trains or validates on: all their
    # trials go to the test split (the zero-shot protocol); None: the data set's own
    # (THINGS-EEG2: its 200 test concepts; none otherwise), [] none
    holdout_classes: list[str] | None = None


@dataclass
class EncoderSettings:
    """``[encoder]``: f_theta, triplet loss (eq. 1) + optional cross-entropy read-out."""

    name: str = "binned_linear"
    n_outputs: int = 64
    kwargs: dict[str, Any] = field(default_factory=dict)  # the encoder's own arguments
    epochs: int = 60
    batch_classes: int = 16
    per_class: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-2
    margin: float = 0.2
    mining: str = "batch_hard"
    ce_weight: float = 1.0
    patience: int = 12
    lda_init: bool = False  # binned_linear: start from the closed-form shrinkage LDA
    attributes: bool = False  # + one LDA per class attribute (shape, colour)
    layout: bool = False  # + ridge outputs of the object's x, y, size (demo set)
    layout_weight: float = 1.0


@dataclass
class GanSettings:
    """``[gan]``: the saliency GAN, eq. (6) = alpha1 L_adv + alpha2 L_ms + alpha3 L_ssim."""

    resolution: int = 64
    z_dim: int = 32
    base_channels: int = 32
    epochs: int = 20
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])
    alpha1: float = 1.0
    alpha2: float = 0.1
    alpha3: float = 5.0
    diffaugment: str = "color,translation,cutout"
    patience: int = 8
    condition: str = "features"  # see saliency_gan.gan_condition
    temperature: float = 1.0
    layout: bool = False  # + the encoder's decoded object layout, drawn as a map


@dataclass
class SemanticSettings:
    """``[semantic]``: M_s, L2 (eq. 7) to the caption embeddings."""

    text_encoder: dict[str, Any] = field(default_factory=lambda: {"type": "minilm", "seq_len": 16})
    captions: str = "label"  # "label" or a JSON/TSV file of free captions
    hidden: int = 256
    prototypes: bool = True
    dropout: float = 0.1
    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 12
    # "features": mixture weights from the EEG feature, started from the encoder's class
    # read-out (needs label captions and prototypes); "hidden": from the MLP
    logits_from: str = "hidden"
    # mixture temperature at sampling: one value, or several for the validation choice to
    # pick from (the recipe's select_sharpening)
    sample_temperature: float | list[float] | None = None
    # open set: the prototypes are caption embeddings scored by their cosine with a read-out of
    # the EEG, so any caption can be added (the bundle holds every class's, held-out ones too)
    open_set: bool = False


@dataclass
class RefinerSettings:
    """``[refiner]``: train the demo refiner, or reference a pretrained one.

    ``pretrained``: a bundle (``"demo"`` or a directory) whose refiner the new bundle
    references instead of training one (calibration). ``type`` other than ``"demo"``: a
    diffusers model (``model``: a local directory or Hugging Face id, ``local_files_only``).
    """

    type: str = "demo"  # "demo" | "sd-turbo" | "lcm" | "sd-turbo-random"
    pretrained: str | None = None
    train: dict[str, Any] = field(default_factory=dict)  # DemoRefinerConfig fields
    save_dtype: str | None = None  # "float16" halves the demo refiner on disk
    sample_steps: int | None = None  # sampling defaults stored with a trained demo refiner
    sample_strength: float | None = None
    sample_guidance: float | None = None
    # "steps:strength:guidance" settings tried on the validation trials after training; the best
    # (all-class top-1 of the drawings, ties: SSIM to the seen images) becomes the default
    sample_grid: list[str] = field(default_factory=list)
    model: str | None = None  # diffusers reference
    tiny_vae: str | None = None
    resolution: int | None = None
    steps: int | None = None
    strength: float | None = None
    guidance_scale: float | None = None

    def __post_init__(self) -> None:
        if self.save_dtype not in (None, "float16", "float32"):
            raise ValueError(
                f"refiner.save_dtype is {self.save_dtype!r}; allowed: 'float16', 'float32' (or leave it out)"
            )


@dataclass
class ClassifierSettings:
    """``[classifier]``: the image classifier that judges reconstructions (demo set)."""

    train: bool = True
    pretrained: str | None = None  # a bundle whose classifier to reference instead
    config: dict[str, Any] = field(default_factory=dict)  # ClassifierConfig fields


@dataclass
class BaselineSettings:
    """``[baseline]``: the linear decoder (shrinkage LDA on time-binned windows)."""

    bin_ms: float = 40.0


@dataclass
class TrainConfig:
    """Every setting of ``bci-app train`` (one attribute per TOML table)."""

    train: RunSettings = field(default_factory=RunSettings)
    data: DataSettings = field(default_factory=DataSettings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    gan: GanSettings = field(default_factory=GanSettings)
    semantic: SemanticSettings = field(default_factory=SemanticSettings)
    refiner: RefinerSettings = field(default_factory=RefinerSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    baseline: BaselineSettings = field(default_factory=BaselineSettings)


TRAIN_TABLES = tuple(f.name for f in fields(TrainConfig))


@dataclass
class AppConfig:
    """All settings of the app; the training tables of a file land in ``training``."""

    epoch: EpochConfig = field(default_factory=EpochConfig)
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    training: TrainConfig = field(default_factory=TrainConfig)


APP_TABLES = tuple(f.name for f in fields(AppConfig) if f.name != "training")


# ----------------------------------------------------------------------------- loading
def update(obj: T, values: dict[str, Any], where: str = "") -> T:
    """A copy of dataclass ``obj`` with ``values`` (nested dicts for nested dataclasses).

    Raises ``ValueError`` naming an unknown key (``where`` prefixes it) and the allowed ones.
    """
    if not isinstance(values, dict):
        raise ValueError(f"setting '{where.rstrip('.') or 'settings'}' must be a table, got {values!r}")
    allowed = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in allowed:
            raise ValueError(
                f"unknown setting '{where}{key}'; allowed: {', '.join(sorted(allowed))}"
            )
        current = getattr(obj, key)
        if is_dataclass(current):
            changes[key] = update(current, value, f"{where}{key}.")
        elif isinstance(current, dict):
            if not isinstance(value, dict):
                raise ValueError(f"setting '{where}{key}' must be a table, got {value!r}")
            changes[key] = {**current, **value}  # free-form: validated by the class it configures
        else:
            changes[key] = _checked(value, allowed[key].type, f"{where}{key}")
    return replace(obj, **changes)


_SCALARS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _checked(value: Any, annotation: Any, name: str) -> Any:
    """``value`` if it fits a simple annotation (``int``, ``float | None``, ``list[float]``...)."""
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ValueError(f"setting '{name}' must be {annotation}, got nothing (None)")
    for kind in kinds:
        base = kind.split("[", 1)[0]
        if base in _SCALARS and isinstance(value, _SCALARS[base]) and not (
            base in ("int", "float") and isinstance(value, bool)
        ):
            return float(value) if base == "float" else value
        if base == "list" and isinstance(value, list | tuple):
            return list(value)
        if base not in _SCALARS and base not in ("list", "None"):
            return value  # an annotation this check does not know: the consumer checks it
    raise ValueError(f"setting '{name}' must be {annotation}, got {value!r} ({type(value).__name__})")


def settings(cls: type[T], values: T | dict[str, Any] | None, where: str = "") -> T:
    """``values`` as a ``cls`` (a dataclass): given as is, or built from a dict over defaults."""
    if isinstance(values, cls):
        return values
    return update(cls(), dict(values or {}), where)


def _read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist; expected a TOML file")
    with reading(path, "a TOML settings file"), path.open("rb") as fh:
        data = tomllib.load(fh)
    for key, instead in RETIRED.items():
        table, name = key.split(".")
        if isinstance(data.get(table), dict) and name in data[table]:
            del data[table][name]
            log.warning("%s: setting '%s' is ignored (bci-app never read it): %s", path, key, instead)
    return data


def _check_tables(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ValueError(
            f"unknown table [{unknown[0]}] in {where}; allowed tables: {', '.join(allowed)}"
        )


def load_config(path: str | Path | None = None, **overrides: Any) -> AppConfig:
    """Read ``path`` (TOML) over the defaults, then apply ``overrides`` (nested dicts).

    App tables fill the app's sections and training tables fill ``.training``; a table
    that is neither is an error (a misspelt ``[inferense]`` would otherwise be ignored).
    """
    cfg = AppConfig()
    if path is not None:
        data = _read_toml(path)
        _check_tables(data, APP_TABLES + TRAIN_TABLES, str(path))
        app = {k: v for k, v in data.items() if k in APP_TABLES}
        train = {k: v for k, v in data.items() if k in TRAIN_TABLES}
        cfg = update(cfg, {**app, "training": train}, "")
    if overrides:
        cfg = update(cfg, overrides, "")
    return cfg


def load_train_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None,
    base: TrainConfig | dict[str, Any] | None = None,
) -> TrainConfig:
    """The training settings: ``base`` (defaults, or e.g. what a bundle recorded), then the
    training tables of the TOML file ``path`` (its app tables are checked by name and
    skipped), then ``overrides`` (nested dicts keyed by table)."""
    cfg = settings(TrainConfig, base)
    if path is not None:
        data = _read_toml(path)
        _check_tables(data, APP_TABLES + TRAIN_TABLES, str(path))
        cfg = update(cfg, {k: v for k, v in data.items() if k in TRAIN_TABLES})
    if overrides:
        cfg = update(cfg, overrides)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dicts of a settings dataclass (JSON-serialisable)."""
    return asdict(cfg)
