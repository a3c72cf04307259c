"""Plain data passed between the live threads (no model imports): the Trial that acquisition
hands to inference, the InferenceResult that inference hands to the report and the window, and
the names of the latencies they carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the model's stages, in the order they run (``Reconstruction.times_ms``)
MODEL_STAGES = ("encoder", "saliency", "semantic", "refiner")
#: the latencies (ms) of every reconstructed trial; ``report.json`` always has them (contract)
LATENCIES = ("end_to_end", "epoch", *MODEL_STAGES)
#: latencies where they were measured: waiting for the inference worker (``queue``), and
#: image ready -> shown in the live window (``display``)
EXTRA_LATENCIES = ("queue", "display")


@dataclass
class Trial:
    """One EEG window cut around a stimulus marker.

    Attributes
    ----------
    data : ndarray, float32, shape (n_channels, n_times)
        Filtered and normalised EEG of ``[onset + tmin, onset + tmax]``.
    marker : str
        The marker string as received.
    stim_id : str | None
        Stimulus id mapped from the marker (None when the mapping found none).
    onset : float
        Marker time on the LSL clock (seconds), after clock-offset correction.
    onset_sample : int
        Index (in the source's running sample count) of the sample the onset fell on.
    sfreq : float
        Sampling rate (Hz).
    ch_names : list of str
        Channel names, in the order of ``data``'s rows.
    index : int
        Running trial number within the session (0-based).
    last_sample_time : float
        ``pylsl.local_clock()`` when the window's last sample was received.
    emitted_time : float
        ``pylsl.local_clock()`` when the Trial was made available.
    reject_reason : str | None
        Why the trial cannot be used (``"nan"``, ``"gap"``, ``"incomplete_window"``...),
        or None for a good trial.
    """

    data: np.ndarray
    marker: str
    stim_id: str | None
    onset: float
    onset_sample: int
    sfreq: float
    ch_names: list[str]
    index: int = 0
    last_sample_time: float = float("nan")
    emitted_time: float = float("nan")
    reject_reason: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reject_reason is None

    @property
    def epoch_latency_ms(self) -> float:
        """Delay from the window's last sample arriving to the Trial being available."""
        return 1000.0 * (self.emitted_time - self.last_sample_time)


@dataclass
class InferenceResult:
    """What became of one Trial.

    Attributes
    ----------
    trial : Trial
    outcome : str
        ``"reconstructed"``, ``"dropped"``, ``"rejected"`` or ``"error"``.
    reconstruction : object | None
        The model's ``Reconstruction`` (saliency, image, times_ms, class_probs).
    times_ms : dict
        ``epoch`` (last sample received -> Trial available), ``queue`` (waiting for the
        worker), the model stages, and ``end_to_end`` (last sample received -> image
        ready). Stages that did not run are absent (:data:`LATENCIES`; the window's
        ``display`` time goes to the report on its own, not into this dict).
    reason : str | None
        Drop policy, rejection reason or error message.
    t_ready : float
        LSL clock when the image was ready (or when the outcome was decided).
    seen : ndarray | None
        The seen image (uint8 ``[H, W, 3]``) of a reconstructed trial whose stimulus is
        known: looked up once, by the session's report thread, for the report and the window.
    """

    trial: Trial
    outcome: str
    reconstruction: Any = None
    times_ms: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    t_ready: float = float("nan")
    seen: np.ndarray | None = None
