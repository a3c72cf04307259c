"""Decoding models: EEG encoder, saliency GAN, semantic head, refiners, bundles, Reconstructor.

Heavy submodules (diffusers, transformers) are imported lazily by the code that needs
them; importing ``bci_app.models`` itself stays cheap.
"""

from __future__ import annotations

from bci_app.models.bundle import (
    check_compatible,
    demo_bundle_path,
    load_bundle,
    resolve_bundle_path,
    save_bundle,
)
from bci_app.models.encoders import ENCODERS, build_encoder

__all__ = [
    "ENCODERS",
    "Reconstruction",
    "Reconstructor",
    "build_encoder",
    "check_compatible",
    "demo_bundle_path",
    "load_bundle",
    "resolve_bundle_path",
    "save_bundle",
]


def __getattr__(name: str):
    if name in ("Reconstructor", "Reconstruction"):
        from bci_app.models import reconstructor

        return getattr(reconstructor, name)
    raise AttributeError(f"module 'bci_app.models' has no attribute {name!r}")
