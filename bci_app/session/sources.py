"""What a session runs on: the EEG and marker sources named by ``--source``, the
stimulus set named by ``--images``, and the bundle on the configured device."""

from __future__ import annotations

from typing import Any

from bci_app.config import InferenceConfig, load_config
from bci_app.stimuli import DemoStimulusSet


def inference_config(args: Any) -> InferenceConfig:
    cfg = load_config(getattr(args, "config", None)).inference
    if getattr(args, "device", None):
        cfg.device = args.device
    if getattr(args, "steps", None) is not None:
        cfg.steps = args.steps
    if getattr(args, "strength", None) is not None:
        cfg.strength = args.strength
    return cfg


def load_reconstructor(bundle: str, cfg: InferenceConfig):
    """The bundle on the configured device (fp16 on GPU); torch's CPU threads are set by the
    pipeline while it runs (:mod:`bci_app.session.realtime`)."""
    from bci_app.models.reconstructor import Reconstructor

    rec = Reconstructor.from_bundle(bundle, device=cfg.device, dtype=cfg.dtype,
                                    steps=cfg.steps, strength=cfg.strength)
    return rec


def open_sources(spec: str, markers_name: str | None, reconstructor: Any):
    from bci_app.acquisition.markers import LSLMarkerSource

    kind, _, rest = spec.partition(":")
    if kind == "lsl":
        from bci_app.acquisition.sources import LSLSource

        source = LSLSource(name=rest or None, n_channels=len(reconstructor.spec.ch_names),
                           sfreq=reconstructor.spec.sfreq)
        return source, LSLMarkerSource(name=markers_name)
    if kind == "brainflow":
        from bci_app.acquisition.brainflow_source import BrainFlowSource

        if not rest:
            raise ValueError("--source brainflow needs a board, e.g. brainflow:SYNTHETIC_BOARD or brainflow:-1")
        source = BrainFlowSource(rest)
        markers = LSLMarkerSource(name=markers_name) if markers_name else source
        return source, markers
    raise ValueError(f"--source must be 'lsl[:NAME]' or 'brainflow:BOARD', got {spec!r}")


def stimuli_for(args: Any) -> Any:
    if getattr(args, "images", None):
        from bci_app.ui.presenter import ImageFolderSet

        return ImageFolderSet(args.images)
    return DemoStimulusSet()
