"""Components a bundle references instead of training: a pretrained refiner or image
classifier taken from another bundle (the demo bundle for a calibration), or a diffusers
model. What the referenced component was trained on is carried over into the new
bundle's ``training.component_images`` (or ``"external"`` when nobody recorded it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bci_app.models import bundle as bundle_io

EXTERNAL = "external"


def referenced_bundle(ref: str) -> tuple[Path, dict[str, Any]]:
    """``(directory, config)`` of the bundle named by ``ref`` (``"demo"`` or a path)."""
    path = bundle_io.resolve_bundle_path(ref)
    return path.resolve(), bundle_io.read_bundle_config(path)


def _absolute(entry: dict[str, Any], base: Path, keys: tuple[str, ...] = ("path", "model")) -> dict[str, Any]:
    """``entry`` with its relative paths that exist under ``base`` made absolute (an HF id stays)."""
    out = dict(entry)
    for k in keys:
        v = out.get(k)
        if isinstance(v, str) and not Path(v).is_absolute() and (base / v).exists():
            out[k] = str(base / v)
    return out


def bundle_reference(ref: str) -> str:
    """How the new bundle names a referenced one: ``"demo"``, else its absolute path."""
    return "demo" if str(ref) == "demo" else str(referenced_bundle(ref)[0])


def recorded_images(config: dict[str, Any], component: str) -> list[str] | str:
    """What a bundle recorded about the images ``component`` was trained on."""
    rec = (config.get("training") or {}).get("component_images") or {}
    return rec.get(component, EXTERNAL)


def reference_refiner(ref: str, text_encoder: dict[str, Any] | None) -> tuple[dict[str, Any], list[str] | str]:
    """The refiner entry of bundle ``ref`` (paths made absolute) and its training images.

    ``text_encoder``: the new bundle's semantic text encoder; the referenced refiner
    must have been trained against the same embeddings."""
    path, cfg = referenced_bundle(ref)
    entry = cfg.get("refiner")
    if not entry:
        raise ValueError(f"bundle {path} has no refiner to reference; expected a 'refiner' entry in its config.json")
    theirs = (cfg.get("semantic") or {}).get("text_encoder")
    if text_encoder is not None and theirs is not None and _te_key(theirs) != _te_key(text_encoder):
        raise ValueError(
            f"the referenced refiner of {path} was trained on {theirs} embeddings, but this bundle's "
            f"semantic head regresses {text_encoder}; set [semantic] text_encoder to the referenced one"
        )
    return _absolute(entry, path), recorded_images(cfg, "refiner")


def reference_classifier(ref: str) -> tuple[dict[str, Any], list[str] | str]:
    """The classifier entry of bundle ``ref`` (path made absolute) and its training images."""
    path, cfg = referenced_bundle(ref)
    entry = cfg.get("classifier")
    if not entry:
        raise ValueError(
            f"bundle {path} has no image classifier to reference; expected a 'classifier' entry in its config.json"
        )
    return _absolute(entry, path, ("path",)), recorded_images(cfg, "classifier")


def _te_key(te: dict[str, Any]) -> tuple:
    return tuple(str(te.get(k)) for k in ("type", "name", "seq_len"))
