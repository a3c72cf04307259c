"""Model bundles: a directory with ``config.json`` and one safetensors file per component.

Layout::

    BUNDLE/
      config.json             {"format": "bci-app-bundle", "version": 1,
                               "spec": PreprocessingSpec dict (channels, sfreq, window,
                                       filters, normalisation),
                               "components": {name: {"class": ..., "kwargs": {...}}},
                               "semantic": {caption source, text encoder, ...},
                               "refiner": {"path": "refiner" | model id, ...},
                               "training": {"data": SPEC, "seed": S, "config": {...}},
                               "classes": [...]}
      encoder.safetensors  generator.safetensors  discriminator.safetensors
      semantic.safetensors  classifier.safetensors  refiner/ (diffusers format)

``"demo"`` resolves to the bundle shipped in ``bci_app/assets/demo_bundle``.
Every component is a :class:`ConfigModule`: an ``nn.Module`` whose init kwargs are kept
in ``.config`` (diffusers style) so it can be rebuilt from ``config.json``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bci_app.file_errors import reading

BUNDLE_FORMAT = "bci-app-bundle"
BUNDLE_VERSION = 1
CONFIG_NAME = "config.json"

# class name -> module that defines it (kept explicit: only these classes can be loaded)
COMPONENT_CLASSES = {
    "LSTMEncoder": "bci_app.models.encoders",
    "ShallowConvEncoder": "bci_app.models.encoders",
    "BinnedLinearEncoder": "bci_app.models.encoders",
    "SaliencyGenerator": "bci_app.models.saliency_gan",
    "SaliencyDiscriminator": "bci_app.models.saliency_gan",
    "SemanticHead": "bci_app.models.semantic",
    "ClassifierHead": "bci_app.models.encoders",
}


class ConfigModule(nn.Module):
    """``nn.Module`` that records its init kwargs in ``self.config`` (JSON-serialisable)."""

    config: dict[str, Any]

    def register_config(self, **kwargs: Any) -> None:
        self.config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}

    def save_pretrained(self, directory: str | Path) -> None:
        """Standalone diffusers-like save: ``config.json`` + ``model.safetensors``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(
            json.dumps({"class": type(self).__name__, "kwargs": self.config}, indent=2)
        )
        save_state(self, directory / "model.safetensors")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ConfigModule:
        directory = Path(directory)
        entry = _read_json(directory / CONFIG_NAME)
        model = build_component(entry, where=str(directory / CONFIG_NAME))
        load_state(model, directory / "model.safetensors")
        return model


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected a JSON config file")
    with reading(path, "a JSON config file"):
        return json.loads(path.read_text())


def component_entry(module: ConfigModule) -> dict[str, Any]:
    return {"class": type(module).__name__, "kwargs": dict(module.config)}


def build_component(entry: dict[str, Any], where: str = "config") -> ConfigModule:
    """Instantiate ``{"class": name, "kwargs": {...}}`` (weights not loaded)."""
    if not isinstance(entry, dict) or "class" not in entry or "kwargs" not in entry:
        raise ValueError(f"{where}: expected a component entry {{'class', 'kwargs'}}, got {entry!r}")
    name = entry["class"]
    if name not in COMPONENT_CLASSES:
        raise ValueError(
            f"{where}: unknown component class {name!r}; known: {', '.join(sorted(COMPONENT_CLASSES))}"
        )
    cls = getattr(importlib.import_module(COMPONENT_CLASSES[name]), name)
    return cls(**entry["kwargs"])


def save_state(module: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path))


def load_state(module: nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist; expected the weights of {type(module).__name__}")
    with reading(path, f"the safetensors weights of {type(module).__name__}"):
        state = load_file(str(path))
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match {type(module).__name__}; missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}"
        )


def demo_bundle_path() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "demo_bundle"


def resolve_bundle_path(path: str | Path) -> Path:
    """``"demo"`` -> the shipped bundle; otherwise the given directory (must exist)."""
    p = demo_bundle_path() if str(path) == "demo" else Path(path)
    if not (p / CONFIG_NAME).is_file():
        hint = (
            " (the demo bundle is not built yet: run `bci-app train --config configs/demo.toml "
            "--data synthetic:2000 --out bci_app/assets/demo_bundle`)"
            if str(path) == "demo"
            else ""
        )
        raise FileNotFoundError(f"no model bundle at {p}: expected {p / CONFIG_NAME}{hint}")
    return p


def component_base(bundle_dir: str | Path, entry: dict[str, Any] | None, what: str) -> Path:
    """The directory a component entry's relative ``path`` is read from: the bundle itself, or
    the bundle the entry references by ``"bundle"`` - ``"demo"`` (the shipped one, wherever
    bci-app is installed) or a path relative to this bundle (absolute paths are read as
    given) - so that a bundle copied to another machine keeps loading."""
    bundle_dir = Path(bundle_dir)
    ref = (entry or {}).get("bundle")
    if not ref:
        return bundle_dir
    target = demo_bundle_path() if ref == "demo" else (bundle_dir / str(ref))
    if not (target / CONFIG_NAME).is_file():
        how = ("reinstall bci-app (the demo bundle ships with it)" if ref == "demo" else
               f"copy that bundle to {target.resolve()} (the path is relative to {bundle_dir}), or retrain "
               f"with [{what}] pretrained = \"demo\" or another bundle")
        raise FileNotFoundError(
            f"{bundle_dir}: its {what} is the one of bundle {ref!r}, which is not at {target} "
            f"(no {CONFIG_NAME} there); {how}"
        )
    return target


def save_bundle(
    directory: str | Path,
    config: dict[str, Any],
    components: dict[str, ConfigModule],
) -> Path:
    """Write ``config.json`` (``config`` + the component entries) and the weights.

    Files are written to temporary names then renamed, so a killed process never leaves a
    half-written ``config.json`` beside weights of another version.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = dict(config)
    cfg["format"] = BUNDLE_FORMAT
    cfg["version"] = BUNDLE_VERSION
    comps = dict(cfg.get("components", {}))
    for name, module in components.items():
        tmp = directory / f".{name}.safetensors.tmp"
        save_state(module, tmp)
        tmp.replace(directory / f"{name}.safetensors")
        comps[name] = component_entry(module)
    cfg["components"] = comps
    tmp = directory / f".{CONFIG_NAME}.tmp"
    tmp.write_text(json.dumps(cfg, indent=2, default=_json_default))
    tmp.replace(directory / CONFIG_NAME)
    return directory


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_bundle_config(path: str | Path) -> dict[str, Any]:
    p = resolve_bundle_path(path)
    cfg = _read_json(p / CONFIG_NAME)
    if cfg.get("format") != BUNDLE_FORMAT:
        raise ValueError(
            f"{p / CONFIG_NAME}: 'format' is {cfg.get('format')!r}, expected {BUNDLE_FORMAT!r}"
        )
    return cfg


def load_component(path: str | Path, name: str, config: dict[str, Any] | None = None) -> ConfigModule:
    """Build component ``name`` from the bundle's ``config.json`` and load its weights."""
    p = resolve_bundle_path(path)
    cfg = config if config is not None else read_bundle_config(p)
    comps = cfg.get("components", {})
    if name not in comps:
        raise KeyError(
            f"{p / CONFIG_NAME} has no component {name!r}; it has: {', '.join(sorted(comps)) or 'none'}"
        )
    module = build_component(comps[name], where=f"{p / CONFIG_NAME} components.{name}")
    load_state(module, p / f"{name}.safetensors")
    module.eval()
    return module


def load_bundle(path: str | Path) -> tuple[dict[str, Any], dict[str, ConfigModule]]:
    """Config and every component listed in it (weights loaded, eval mode)."""
    p = resolve_bundle_path(path)
    cfg = read_bundle_config(p)
    return cfg, {name: load_component(p, name, cfg) for name in cfg.get("components", {})}


def check_compatible(
    config: dict[str, Any],
    ch_names: list[str] | None = None,
    sfreq: float | None = None,
    n_times: int | None = None,
    where: str = "bundle",
) -> None:
    """Raise ``ValueError`` naming both sides when a stream does not match the bundle.

    ``config`` is the bundle config (its ``"spec"`` holds ``ch_names``, ``sfreq``,
    ``tmin``/``tmax``). Arguments left ``None`` are not checked.
    """
    spec = config.get("spec", {})
    b_ch = list(spec.get("ch_names") or [])
    b_sf = spec.get("sfreq")
    b_nt = config.get("n_times")
    if b_nt is None and b_sf is not None and "tmin" in spec and "tmax" in spec:
        b_nt = int(round((spec["tmax"] - spec["tmin"]) * b_sf))
    if ch_names is not None and b_ch:
        ch_names = list(ch_names)
        if len(ch_names) != len(b_ch):
            raise ValueError(
                f"channel count mismatch: the stream has {len(ch_names)} channels, the {where} "
                f"expects {len(b_ch)} ({b_ch[:3]}...); record with the bundle's montage or "
                "train a bundle for this one"
            )
        if ch_names != b_ch:
            diff = [(i, a, b) for i, (a, b) in enumerate(zip(ch_names, b_ch, strict=True)) if a != b]
            i, a, b = diff[0]
            raise ValueError(
                f"channel names differ: the stream has {a!r} at index {i}, the {where} expects "
                f"{b!r} ({len(diff)} of {len(b_ch)} differ); reorder/rename the stream's channels"
            )
    if sfreq is not None and b_sf is not None and abs(float(sfreq) - float(b_sf)) > 1e-6:
        raise ValueError(
            f"sampling rate mismatch: the stream runs at {sfreq} Hz, the {where} expects {b_sf} Hz"
        )
    if n_times is not None and b_nt is not None and int(n_times) != int(b_nt):
        raise ValueError(
            f"window mismatch: the stream's windows have {n_times} samples, the {where} expects "
            f"{b_nt} (tmin={spec.get('tmin')}, tmax={spec.get('tmax')} s at {b_sf} Hz)"
        )


def module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(module.parameters(), None)
    if p is None:
        return torch.device("cpu"), torch.float32
    return p.device, p.dtype
