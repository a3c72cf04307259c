"""Components a bundle references instead of training: a pretrained refiner or image
classifier taken from another bundle (the demo bundle for a calibration), or a diffusers
model. What the referenced component was trained on is carried over into the new
bundle's ``training.component_images`` and ``training.component_classes`` (or
``"external"`` when nobody recorded it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bci_app.models import bundle as bundle_io

EXTERNAL = "external"


def referenced_bundle(ref: str) -> tuple[Path, dict[str, Any]]:
    """``(directory, config)`` of the bundle named by ``ref`` (``"demo"`` or a path)."""
    path = bundle_io.resolve_bundle_path(ref)
    return path.resolve(), bundle_io.read_bundle_config(path)


def _referenced(entry: dict[str, Any], ref: str, path: Path, out: Path | None) -> dict[str, Any]:
    """``entry`` of the bundle at ``path`` as the new bundle ``out`` stores it: with
    ``"bundle"`` naming that bundle - ``"demo"``, or its path relative to ``out`` - and its
    own relative paths kept, never an absolute path into an install (a bundle must load
    when copied elsewhere). An entry that already references another bundle is followed."""
    import os

    out_entry = dict(entry)
    inner = out_entry.pop("bundle", None)
    if inner:  # the referenced bundle itself references another one: point at that one
        base = bundle_io.component_base(path, entry, "component")
        ref, path = ("demo", base) if inner == "demo" else (str(base), base)
    if str(ref) == "demo":
        out_entry["bundle"] = "demo"
    else:
        out_entry["bundle"] = os.path.relpath(path.resolve(), (out or Path.cwd()).resolve())
    return out_entry


def bundle_reference(ref: str) -> str:
    """How the new bundle's record names a referenced one: ``"demo"``, else its path as given."""
    return "demo" if str(ref) == "demo" else str(ref)


def recorded_images(config: dict[str, Any], component: str) -> list[str] | str:
    """What a bundle recorded about the images ``component`` was trained on."""
    rec = (config.get("training") or {}).get("component_images") or {}
    return rec.get(component, EXTERNAL)


def recorded_classes(ref: str, component: str) -> list[str] | str:
    """The classes bundle ``ref`` recorded ``component`` was trained on
    (``training.component_classes``); for a bundle recorded before that, every class it
    knows (what a component trained on its splits may have seen), or ``"external"`` when
    the component's images were not recorded either."""
    _, cfg = referenced_bundle(ref)
    rec = ((cfg.get("training") or {}).get("component_classes") or {}).get(component)
    if rec is not None:
        return rec
    return EXTERNAL if isinstance(recorded_images(cfg, component), str) else list(cfg.get("classes", []))


def reference_refiner(ref: str, text_encoder: dict[str, Any] | None, out: Path | None = None
                      ) -> tuple[dict[str, Any], list[str] | str]:
    """The refiner entry of bundle ``ref`` as bundle ``out`` stores it (see :func:`_referenced`)
    and its training images.

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
    return _referenced(entry, ref, path, out), recorded_images(cfg, "refiner")


def reference_classifier(ref: str, out: Path | None = None) -> tuple[dict[str, Any], list[str] | str]:
    """The classifier entry of bundle ``ref`` as bundle ``out`` stores it and its training images."""
    path, cfg = referenced_bundle(ref)
    entry = cfg.get("classifier")
    if not entry:
        raise ValueError(
            f"bundle {path} has no image classifier to reference; expected a 'classifier' entry in its config.json"
        )
    return _referenced(entry, ref, path, out), recorded_images(cfg, "classifier")


def _te_key(te: dict[str, Any]) -> tuple:
    return tuple(str(te.get(k)) for k in ("type", "name", "seq_len"))
