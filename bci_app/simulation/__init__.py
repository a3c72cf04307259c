"""The virtual subject's signal model (pure numpy), shared by live and offline use.

- :func:`standard_montage_128`: the default subject's 128 channel names (``biosemi128``);
  :func:`resolve_montage`: any MNE standard montage or a subset of one, for other caps.
- :class:`SubjectModel`: content-dependent evoked responses to demo images (the
  ``"attributes"`` model, the default).
- :class:`ComponentsModel`: another structure (``model="components"``): each class a
  random mixture of shared ERP components; :class:`ComponentsBackground` its background
  (drift, one bad channel); :func:`spread_classes` a subset of classes.
- :class:`BackgroundNoise`: ongoing EEG (1/f, alpha, blinks, line noise, drift).
- :func:`simulate_raw`: a whole session as an ``mne.io.RawArray`` with annotations.
"""

from __future__ import annotations

from bci_app.simulation.components import (
    ComponentsBackground,
    ComponentsModel,
    resolve_classes,
    spread_classes,
)
from bci_app.simulation.montage import (
    MONTAGE_NAME,
    montage_channels,
    resolve_montage,
    standard_montage_128,
)
from bci_app.simulation.noise import BackgroundNoise
from bci_app.simulation.raw import DESIGNS, MODELS, resolve_model_name, simulate_raw
from bci_app.simulation.subject import EVOKED_SECONDS, SubjectModel

__all__ = [
    "DESIGNS",
    "EVOKED_SECONDS",
    "MONTAGE_NAME",
    "MODELS",
    "BackgroundNoise",
    "ComponentsBackground",
    "ComponentsModel",
    "SubjectModel",
    "montage_channels",
    "resolve_classes",
    "resolve_model_name",
    "resolve_montage",
    "simulate_raw",
    "spread_classes",
    "standard_montage_128",
]
