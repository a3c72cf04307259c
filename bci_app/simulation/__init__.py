"""The virtual subject's signal model (pure numpy), shared by live and offline use.

- :func:`standard_montage_128`: the default subject's 128 channel names (``biosemi128``);
  :func:`resolve_montage`: any MNE standard montage or a subset of one, for other caps.
- :class:`SubjectModel`: content-dependent evoked responses to demo images.
- :class:`BackgroundNoise`: ongoing EEG (1/f, alpha, blinks, line noise, drift).
- :func:`simulate_raw`: a whole session as an ``mne.io.RawArray`` with annotations.
"""

from __future__ import annotations

from bci_app.simulation.montage import (
    MONTAGE_NAME,
    montage_channels,
    resolve_montage,
    standard_montage_128,
)
from bci_app.simulation.noise import BackgroundNoise
from bci_app.simulation.raw import DESIGNS, simulate_raw
from bci_app.simulation.subject import EVOKED_SECONDS, SubjectModel

__all__ = [
    "DESIGNS",
    "EVOKED_SECONDS",
    "MONTAGE_NAME",
    "BackgroundNoise",
    "SubjectModel",
    "montage_channels",
    "resolve_montage",
    "simulate_raw",
    "standard_montage_128",
]
