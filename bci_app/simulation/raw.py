"""A whole simulated session as an ``mne.io.RawArray`` (what ``bci-app simulate`` writes)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from bci_app.simulation.components import ComponentsBackground, ComponentsModel, resolve_classes
from bci_app.simulation.montage import (
    MONTAGE_NAME,
    channel_directions,
    direction,
    make_montage,
    resolve_montage,
    scalp_blob,
)
from bci_app.simulation.noise import BackgroundNoise
from bci_app.simulation.subject import SubjectModel
from bci_app.stimuli import DemoStimulusSet, format_marker, make_schedule

logger = logging.getLogger(__name__)

_UV = 1e-6
DESIGNS = ("rapid", "block")
#: generative structures of the virtual subject (``simulate --model``); "subject" is an
#: alias of "attributes"
MODELS = ("attributes", "components")
_MODEL_ALIASES = {"subject": "attributes"}


def resolve_model_name(model: str) -> str:
    """``"attributes"`` (alias ``"subject"``) or ``"components"``; ``ValueError`` otherwise."""
    name = _MODEL_ALIASES.get(str(model).strip().lower(), str(model).strip().lower())
    if name not in MODELS:
        raise ValueError(
            f"model must be one of {MODELS} (or 'subject', the attributes model), got {model!r}"
        )
    return name


def trial_variability(rng: np.random.Generator, sfreq: float) -> tuple[int, float]:
    """One trial's latency shift (samples) and amplitude factor: neurons are not clocks."""
    shift = int(round(rng.normal(0.0, 0.006) * sfreq))
    gain = float(np.exp(rng.normal(0.0, 0.2)))
    return shift, gain


def shifted(evoked: np.ndarray, shift: int) -> np.ndarray:
    """``evoked`` delayed by ``shift`` samples (advanced when negative), zero-padded."""
    if shift == 0:
        return evoked
    out = np.zeros_like(evoked)
    if shift > 0:
        out[:, shift:] = evoked[:, :-shift]
    else:
        out[:, :shift] = evoked[:, -shift:]
    return out


def _block_offsets(
    labels: list[int],
    onset_samples: np.ndarray,
    n_samples: int,
    ch_names: list[str],
    rng: np.random.Generator,
    sfreq: float,
    montage: str = MONTAGE_NAME,
) -> np.ndarray:
    """Per-block DC offsets ``[C, n_samples]`` (float32) with 1 s ramps between blocks."""
    dirs = channel_directions(ch_names, montage)
    level = np.zeros(n_samples, dtype=np.int32)
    starts = [0] + [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
    topo = np.zeros((len(ch_names), len(starts)), dtype=np.float32)
    for b, i in enumerate(starts):
        level[onset_samples[i] if b else 0 :] = b
        centre = direction(rng.uniform(0, 360), rng.uniform(0, 70))
        topo[:, b] = scalp_blob(dirs, centre, 0.8) * rng.normal(0.0, 15.0) * _UV
    # smooth the steps: 1 s moving average of the block index weights
    out = topo[:, level]
    k = int(sfreq)
    cs = np.cumsum(out, axis=1, dtype=np.float64)
    sm = np.empty_like(out)
    sm[:, k:] = (cs[:, k:] - cs[:, :-k]) / k
    sm[:, :k] = out[:, :k]
    return sm


_CACHE_BYTES = 128 * 2**20  # the evoked responses kept for images shown again


def simulate_raw(
    n_trials: int,
    seed: int = 0,
    design: str = "rapid",
    snr: float = 1.0,
    on: float = 0.5,
    stimuli: DemoStimulusSet | None = None,
    *,
    off: float = 0.0,
    sfreq: float = 1000.0,
    line_freq: float | None = 50.0,
    subject_seed: int = 0,
    start: float = 1.0,
    tail: float = 1.0,
    noise_scale: float = 1.0,
    montage: str | None = None,
    model: str = "attributes",
    classes: int | Sequence[int] | None = None,
):
    """Simulate a session: EEG of the virtual subject watching ``n_trials`` demo images.

    Parameters
    ----------
    n_trials : int
        Number of stimuli shown.
    seed : int
        Seed of the session: schedule, background noise, trial-to-trial variability.
    design : {"rapid", "block"}
        ``"rapid"``: randomised order, no slow drift. ``"block"``: classes in blocks
        (like the Spampinato data set) plus slow drift and a per-block offset, so that
        a classifier can learn time within the session instead of the image (the
        known flaw of block designs).
    snr : float
        Multiplies the evoked responses (1.0: calibrated default).
    on, off : float
        Seconds each image is shown and blank seconds between images.
    stimuli : DemoStimulusSet | None
        The stimulus set (default ``DemoStimulusSet()``).
    sfreq : float
        Sampling rate (Hz).
    line_freq : float | None
        Mains frequency (Hz), ``None`` for no line noise.
    subject_seed : int
        Identity of the virtual subject (:class:`SubjectModel` ``seed``); keep the
        default to get the same subject as the demo's live virtual subject.
    start, tail : float
        Seconds of EEG before the first and after the last stimulus.
    noise_scale : float
        Multiplies the background noise.
    montage : str | None
        The cap: an MNE standard montage (``"biosemi64"``, ``"standard_1020"``...) or a
        subset of one (``"standard_1020:Fz,Cz,Pz,O1,Oz,O2"``); None is the default
        subject's ``biosemi128`` (with ``sfreq=1000`` the shipped demo's data).
    model : {"attributes", "components"}
        The generative structure. ``"attributes"`` (alias ``"subject"``, the default and the
        shipped demo's data): :class:`SubjectModel`, responses built from the images'
        shape, colour and layout. ``"components"``: :class:`ComponentsModel`, each class a
        random mixture of shared ERP components with per-trial latency and amplitude
        jitter, over :class:`ComponentsBackground` (drift and one bad channel).
    classes : int | sequence of int | None
        The classes the session shows: None for all 40, an int ``K`` for ``K`` classes
        spread over shapes and colours (:func:`spread_classes`, the same ones for every
        seed), or explicit class labels.

    Returns
    -------
    raw : mne.io.RawArray
        EEG channels of ``montage`` (names and positions), volts, annotations
        ``"stim/<stim_id>"`` at each onset with duration ``on``.
    """
    import mne

    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if on <= 0 or off < 0:
        raise ValueError(f"on must be > 0 and off >= 0 seconds, got on={on}, off={off}")
    if sfreq <= 0:
        raise ValueError(f"sfreq must be > 0 Hz, got {sfreq}")
    kind = resolve_model_name(model)
    montage_name, montage_chs = resolve_montage(montage)
    stimuli = stimuli if stimuli is not None else DemoStimulusSet()
    if kind == "components":
        model = ComponentsModel(stimuli, snr=snr, seed=subject_seed, sfreq=sfreq,
                                ch_names=montage_chs, montage=montage_name)
    else:
        model = SubjectModel(stimuli, snr=snr, seed=subject_seed, sfreq=sfreq,
                             ch_names=montage_chs, montage=montage_name)
    ch_names = model.ch_names
    C = len(ch_names)

    ids = stimuli.stim_ids
    shown = resolve_classes(classes)
    if shown is not None:
        keep = set(shown)
        ids = [s for s in ids if stimuli.label(s) in keep]
    schedule = make_schedule(
        ids,
        [stimuli.label(s) for s in ids],
        n_trials,
        on=on,
        off=off,
        order="block" if design == "block" else "random",
        seed=seed,
        start=start,
    )
    onset_samples = np.round(schedule.onsets * sfreq).astype(np.int64)
    n_samples = int(onset_samples[-1] + model.n_times + round(tail * sfreq))

    # background, chunk by chunk into one float64 array (what RawArray keeps)
    data = np.empty((C, n_samples), dtype=np.float64)
    if kind == "components":
        noise = ComponentsBackground(ch_names, sfreq, seed=seed, line_freq=line_freq,
                                     scale=noise_scale, montage=montage_name)
    else:
        noise = BackgroundNoise(
            C,
            sfreq,
            seed=seed,
            line_freq=line_freq,
            drift=design == "block",
            ch_names=ch_names,
            scale=noise_scale,
            montage=montage_name,
        )
    step = int(60 * sfreq)
    for a in range(0, n_samples, step):
        b = min(n_samples, a + step)
        data[:, a:b] = noise.generate(b - a)
    if design == "block":
        rng_b = np.random.default_rng([seed, 0xB10C])
        data += _block_offsets(
            [stimuli.label(s) for s in schedule.stim_ids],
            onset_samples,
            n_samples,
            ch_names,
            rng_b,
            sfreq,
            montage_name,
        )

    # evoked responses: one small matmul per distinct image, added per trial
    rng = np.random.default_rng([seed, 0x7A1])
    L = model.n_times
    cache: dict[str, np.ndarray] = {}
    for sid, k0 in zip(schedule.stim_ids, onset_samples, strict=True):
        if kind == "components":  # jitter per component: a fresh response per trial
            data[:, k0 : k0 + L] += model.trial(sid, rng)
            continue
        ev = cache.get(sid)
        if ev is None:
            ev = cache[sid] = model.evoked(sid).astype(np.float32)
        shift, gain = trial_variability(rng, sfreq)
        data[:, k0 : k0 + L] += gain * shifted(ev, shift)
        if len(cache) * ev.nbytes > _CACHE_BYTES:  # a long session shows thousands of images
            cache.clear()

    info = mne.create_info(ch_names, sfreq, ch_types="eeg")
    info["line_freq"] = line_freq
    if kind == "components":
        # not marked in info["bads"]: like a real recording, finding it is the user's job
        info["description"] = (
            f"bci-app virtual subject, model=components, bad channel(s) {', '.join(noise.bad_names)}"
        )
    raw = mne.io.RawArray(data, info, copy="auto", verbose="error")
    raw.set_montage(make_montage(montage_name), verbose="error")
    raw.set_annotations(
        mne.Annotations(
            onset=onset_samples / sfreq,
            duration=np.full(n_trials, float(on)),
            description=[format_marker(s) for s in schedule.stim_ids],
        )
    )
    logger.info(
        "simulated %d trials (%s design, %s model), %.1f s of EEG",
        n_trials, design, kind, n_samples / sfreq,
    )
    return raw
