"""EEG acquisition: sources (LSL via pylsl, BrainFlow), markers, epocher, recorder, player.

Heavy modules (pylsl, BrainFlow, MNE) are imported when first used. The app's process
loads one liblsl, pylsl's; mne-lsl (which bundles its own) is never imported here.
"""

from __future__ import annotations

from importlib import import_module

from bci_app.messages import Trial

_LAZY = {
    "Acquisition": "bci_app.acquisition.acquisition",
    "BrainFlowSource": "bci_app.acquisition.brainflow_source",
    "Dejitter": "bci_app.acquisition.dejitter",
    "Epocher": "bci_app.acquisition.epocher",
    "LSLMarkerSource": "bci_app.acquisition.markers",
    "LSLSource": "bci_app.acquisition.sources",
    "EEGSource": "bci_app.acquisition.sources",
    "Recorder": "bci_app.acquisition.recorder",
    "read_session": "bci_app.acquisition.recorder",
    "finalize_session": "bci_app.acquisition.recorder",
    "RingBuffer": "bci_app.acquisition.ring_buffer",
    "StreamConformer": "bci_app.acquisition.conform",
    "StreamNotFound": "bci_app.acquisition.discovery",
    "find_streams": "bci_app.acquisition.discovery",
    "list_streams": "bci_app.acquisition.discovery",
    "SessionPlayer": "bci_app.acquisition.player",
}

__all__ = ["Trial", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bci_app.acquisition' has no attribute {name!r}")
