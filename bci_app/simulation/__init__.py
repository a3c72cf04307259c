"""The virtual subject's signal model (pure numpy), shared by live and offline use.

- :func:`standard_montage_128`: the 128 channel names (MNE's ``biosemi128``).
- :class:`SubjectModel`: content-dependent evoked responses to demo images.
- :class:`BackgroundNoise`: ongoing EEG (1/f, alpha, blinks, line noise, drift).
- :func:`simulate_raw`: a whole session as an ``mne.io.RawArray`` with annotations.
"""

from __future__ import annotations

from bci_app.simulation.montage import MONTAGE_NAME, standard_montage_128
from bci_app.simulation.noise import BackgroundNoise
from bci_app.simulation.raw import DESIGNS, simulate_raw
from bci_app.simulation.subject import EVOKED_SECONDS, SubjectModel

__all__ = [
    "DESIGNS",
    "EVOKED_SECONDS",
    "MONTAGE_NAME",
    "BackgroundNoise",
    "SubjectModel",
    "simulate_raw",
    "standard_montage_128",
]
