"""``synthetic[:N]``: trials of the virtual subject, epoched with the live window arithmetic.

``model=components`` chooses the other generative structure
(:class:`bci_app.simulation.ComponentsModel`), ``classes=K`` a subset of ``K`` classes.
"""

from __future__ import annotations

from bci_app.datasets.base import EEGImageDataset
from bci_app.datasets.sessions import dataset_from_epochs, default_spec
from bci_app.preprocessing import PreprocessingSpec
from bci_app.stimuli import DemoStimulusSet, MarkerMapper


def load_synthetic(
    n_trials: int = 2000,
    seed: int = 0,
    design: str = "rapid",
    snr: float = 1.0,
    preprocessing: PreprocessingSpec | None = None,
    *,
    montage: str | None = None,
    sfreq: float | None = None,
    model: str = "attributes",
    classes: int | None = None,
) -> EEGImageDataset:
    """Trials of the virtual subject (:func:`bci_app.simulation.simulate_raw`).

    ``montage`` (an MNE standard montage name, or a comma-free subset spec accepted by
    :func:`bci_app.simulation.resolve_montage`) and ``sfreq`` default to the 128-channel,
    1 kHz subject. ``model`` is ``"attributes"`` (alias ``"subject"``, the default) or
    ``"components"``; ``classes`` an int ``K`` (``K`` classes spread over shapes and colours,
    :func:`bci_app.simulation.spread_classes`) or None for all 40.
    """
    from bci_app.preprocessing import epoch_raw
    from bci_app.simulation import simulate_raw

    if n_trials < 1:
        raise ValueError(f"synthetic data needs at least 1 trial, got {n_trials}")
    stimuli = DemoStimulusSet()
    extra = {}
    if montage is not None:
        extra["montage"] = montage
    if sfreq is not None:
        extra["sfreq"] = float(sfreq)
    if classes is not None:
        extra["classes"] = classes
    raw = simulate_raw(n_trials, seed=seed, design=design, snr=snr, model=model, **extra)
    spec = preprocessing or default_spec(list(raw.ch_names), float(raw.info["sfreq"]))
    epochs = epoch_raw(raw, spec, MarkerMapper())
    del raw  # the continuous signal (8 bytes a sample and channel) goes before the windows are copied
    return dataset_from_epochs(epochs, spec, None, stimuli)
