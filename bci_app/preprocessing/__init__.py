"""Signal processing shared by the live epocher and the offline data-set loaders.

Live (``acquisition.Epocher``) and offline (``epoch_raw``, ``epoch_array``) use the same
causal SOS filters and the same window arithmetic, so a model trained on offline
epochs sees the signal the live path produces. Channel picking by name and unit scaling
(:class:`ChannelMap`) and causal down-sampling (:class:`CausalResampler`) are shared too.
"""

from __future__ import annotations

from bci_app.preprocessing.channels import (
    UNIT_CHOICES,
    ChannelMap,
    implausible_volts,
    pick_indices,
    volts_per_unit,
)
from bci_app.preprocessing.epochs import (
    EpochedData,
    epoch_array,
    epoch_raw,
    marker_sample,
    window_bounds,
)
from bci_app.preprocessing.filters import CausalFilter
from bci_app.preprocessing.resample import CausalResampler
from bci_app.preprocessing.spec import PreprocessingSpec, compute_norm, normalise

__all__ = [
    "UNIT_CHOICES",
    "CausalFilter",
    "CausalResampler",
    "ChannelMap",
    "EpochedData",
    "PreprocessingSpec",
    "compute_norm",
    "epoch_array",
    "epoch_raw",
    "implausible_volts",
    "marker_sample",
    "normalise",
    "pick_indices",
    "volts_per_unit",
    "window_bounds",
]
