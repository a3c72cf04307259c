"""A second virtual subject of another structure: shared ERP components, mixed per class.

The default virtual subject (:class:`bci_app.simulation.SubjectModel`, ``model="attributes"``)
builds each response from what the image shows (shape, colour, position, size), so that
decoders which share statistical strength over those attributes have something to find.
Figures measured only on it may owe their size to that structure. This model is built
the other way round, as the textbook picture of an ERP data set:

- ``n_components`` (default 6) shared ERP components, each a smooth scalp map (one or
  two Gaussian blobs on the montage) times a damped wave peaking between 80 and 400 ms;
- each class's response is its own random mixture (weights) of those shared components:
  a mean mixture common to all classes plus a class-specific random part. The weights
  are drawn per class label, independently of the class's shape or colour, so two red
  classes are no more alike than a red and a blue one;
- each image adds a small random perturbation of its class's weights
  (``image_jitter``), nothing else: position and size play no part;
- every trial jitters: a common latency shift (sd 8 ms) plus one per component (sd 5 %
  of its latency), a per-trial gain and a per-component gain (log-normal, sd 0.2), so
  trial-to-trial variability is not a rigid copy of the mean;
- the background (:class:`ComponentsBackground`) is the spatially correlated 1/f EEG of
  :class:`~bci_app.simulation.BackgroundNoise` (with alpha, frontal blinks and line
  noise; there are no EOG channels) with slow drift always on, plus one bad channel: an
  electrode with poor contact, ~10 times noisier than the rest (broad-band noise, strong
  line pick-up and occasional pops).

Every montage (:func:`bci_app.simulation.resolve_montage`) and sampling rate works: the
maps come from the electrode directions, the waves are evaluated analytically at the
rate. Stimulus ids are the demo set's (``"cKK_iNN"``), so the demo's refiner and image
classifier still draw and judge them; :func:`spread_classes` picks a subset of classes
spread over shapes and colours for sessions that show only some of them.

The subject (maps, waves, mixtures) is fixed by ``seed``; the session's noise, bad
channel and trial jitter by the session seed (:func:`bci_app.simulation.simulate_raw`).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from bci_app.simulation.montage import (
    MONTAGE_NAME,
    channel_directions,
    direction,
    montage_channels,
    scalp_blob,
)
from bci_app.simulation.noise import BackgroundNoise, _unit_response_std
from bci_app.simulation.subject import EVOKED_SECONDS  # the same response length as the subject's
from bci_app.stimuli import COLOURS, SHAPES, DemoStimulusSet

_UV = 1e-6

#: Peak amplitude (microvolts) of one component at unit weight, before ``snr``: calibrates
#: ``snr=1.0``. Measured with ``calibrate()`` in tests/simulation/test_components.py:
#: ``synthetic:2000,seed=S,model=components,montage=M,sfreq=F`` split by image (1440
#: training trials, 400 test trials of unseen images), the app's default window (20-460 ms,
#: causal 1-40 Hz band-pass, 50 Hz notch), :class:`bci_app.models.baseline.LinearBaseline`
#: (shrinkage LDA on 40 ms bins), single-trial 40-way top-1 (chance 0.025), subject 0:
#: biosemi32 at 250 Hz 0.285 / 0.270 / 0.260 (session seeds 0 / 1 / 2), biosemi64 at 512 Hz
#: 0.305 / 0.285, biosemi128 at 1 kHz 0.323 / 0.318. Other subjects (``subject_seed`` 1-3,
#: biosemi32 at 250 Hz, session seed 0) read 0.165 / 0.283 / 0.253: people differ.
DEFAULT_AMPLITUDE_UV = 9.0


def spread_classes(n: int, seed: int = 0, n_classes: int | None = None) -> list[int]:
    """``n`` demo class labels spread evenly over shapes and colours (sorted).

    Each next class is the one whose shape and colour have been picked least so far
    (ties broken by a generator seeded with ``seed``), so 20 of the 40 classes hold every
    shape 2-3 times and every colour 4 times. ``n_classes`` defaults to all 40.
    """
    total = DemoStimulusSet.n_classes if n_classes is None else int(n_classes)
    if not 1 <= n <= total:
        raise ValueError(f"the number of classes must be in 1..{total}, got {n}")
    n_col = len(COLOURS)
    rng = np.random.default_rng([int(seed), 0xC1A55])
    left = list(rng.permutation(total))
    shape_count = np.zeros(len(SHAPES), dtype=int)
    colour_count = np.zeros(n_col, dtype=int)
    chosen: list[int] = []
    for _ in range(n):
        costs = [shape_count[c // n_col] + colour_count[c % n_col] for c in left]
        c = int(left.pop(int(np.argmin(costs))))  # first minimum: the random order breaks ties
        shape_count[c // n_col] += 1
        colour_count[c % n_col] += 1
        chosen.append(c)
    return sorted(chosen)


def resolve_classes(classes, seed: int = 0) -> list[int] | None:
    """``None`` (all classes), an int ``K`` (:func:`spread_classes`) or explicit labels."""
    if classes is None:
        return None
    if isinstance(classes, (int, np.integer)):
        return spread_classes(int(classes), seed=seed)
    labels = sorted({int(c) for c in classes})
    bad = [c for c in labels if not 0 <= c < DemoStimulusSet.n_classes]
    if bad or not labels:
        raise ValueError(
            f"classes must be demo class labels in 0..{DemoStimulusSet.n_classes - 1}, got "
            f"{list(classes)!r}; pass an int K for K classes spread over shapes and colours"
        )
    return labels


class ComponentsModel:
    """Evoked responses made of shared ERP components, mixed by class (see the module).

    Same interface as :class:`~bci_app.simulation.SubjectModel` (``evoked``,
    ``components``, ``n_times``, ``times``, ``ch_names``, ``sfreq``, ``montage``), plus
    :meth:`trial`: one trial's response with latency and amplitude jitter.

    Parameters
    ----------
    stimuli : DemoStimulusSet | None
        The stimulus set (default ``DemoStimulusSet()``); only its ids and labels are used.
    snr : float
        Multiplies the evoked responses (1.0 is the calibrated default).
    seed : int
        Identity of the subject (maps, waves, class mixtures).
    sfreq : float
        Sampling rate (Hz).
    ch_names : list of str | None
        Channels (names from ``montage``), default all of them.
    montage : str
        MNE standard montage the channels are placed on (default ``biosemi128``).
    n_components : int
        Number of shared ERP components.
    image_jitter : float
        Standard deviation of each image's perturbation of its class weights (class
        weights have unit spread); 0 makes all images of a class identical.
    """

    latency_range = (0.080, 0.400)  # s, peaks of the components' envelopes
    latency_jitter = 0.008  # s, common to all components of a trial
    latency_jitter_rel = 0.05  # per component, fraction of its latency
    gain_jitter = 0.2  # log-normal sd of the trial gain and of each component's gain

    def __init__(
        self,
        stimuli: DemoStimulusSet | None = None,
        snr: float = 1.0,
        seed: int = 0,
        sfreq: float = 1000.0,
        ch_names: list[str] | None = None,
        montage: str = MONTAGE_NAME,
        *,
        n_components: int = 6,
        image_jitter: float = 0.15,
    ) -> None:
        if snr < 0:
            raise ValueError(f"snr must be >= 0, got {snr}")
        if sfreq <= 0:
            raise ValueError(f"sfreq must be > 0 Hz, got {sfreq}")
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if image_jitter < 0:
            raise ValueError(f"image_jitter must be >= 0, got {image_jitter}")
        self.stimuli = stimuli if stimuli is not None else DemoStimulusSet()
        self.snr = float(snr)
        self.seed = int(seed)
        self.sfreq = float(sfreq)
        self.montage = montage
        self.ch_names = list(ch_names) if ch_names is not None else montage_channels(montage)
        self.n_components = int(n_components)
        self.image_jitter = float(image_jitter)
        self.n_times = int(round(EVOKED_SECONDS * self.sfreq))
        self.times = np.arange(self.n_times) / self.sfreq
        dirs = channel_directions(self.ch_names, montage)
        K = self.n_components
        rng = np.random.default_rng([self.seed, 0xC0C0])
        # -- maps: one or two smooth blobs, mostly over posterior, parietal, central cortex
        topos = np.zeros((len(self.ch_names), K))
        for k in range(K):
            for b in range(int(rng.integers(1, 3))):
                centre = direction(rng.uniform(60, 300), rng.uniform(0, 80))
                sign = 1.0 if b == 0 else rng.choice([-1.0, 1.0])
                topos[:, k] += sign * rng.uniform(0.6, 1.0) * scalp_blob(
                    dirs, centre, rng.uniform(0.35, 0.7)
                )
            topos[:, k] /= max(np.abs(topos[:, k]).max(), 1e-12)
        self.topographies = topos  # [C, K], unit peak
        # -- waves: latencies spread over 80-400 ms, each its own width, frequency, phase
        lo, hi = self.latency_range
        lat = np.linspace(lo, hi, K) + rng.uniform(-0.02, 0.02, K) * (K > 1)
        self.latencies = np.clip(lat, lo, hi)
        # rise time: peak at 2 tau after onset, onset no earlier than 40 ms
        self.taus = np.minimum(rng.uniform(0.015, 0.035, K), (self.latencies - 0.04) / 2)
        self.freqs = rng.uniform(2.0, 7.0, K)  # Hz: slow ERP waves, not oscillations
        self.phases = rng.uniform(-0.5, 0.5, K)  # near a cosine: the peak stays at the latency
        # -- class mixtures: a mean mixture shared by all classes + a class-specific part
        self.mean_weights = rng.choice([-1.0, 1.0], K) * rng.uniform(0.5, 1.0, K)
        self.class_weights = self.mean_weights + rng.standard_normal((self.stimuli.n_classes, K))
        # a cosine taper over the last 100 ms: responses end inside the 0.8 s
        self._taper = np.clip((EVOKED_SECONDS - self.times) / 0.1, 0, 1)
        self._taper = np.sin(0.5 * np.pi * self._taper) ** 2

    # ---------------------------------------------------------------- building blocks
    def time_courses(self, delays: np.ndarray | None = None) -> np.ndarray:
        """Unit-peak damped waves ``[K, L]`` (``delays``: seconds added to each latency)."""
        lat = self.latencies if delays is None else self.latencies + np.asarray(delays)
        tau = self.taus[:, None]
        # onset of each envelope: 2 tau before its peak
        s = self.times[None, :] - (lat[:, None] - 2 * tau)
        pos = np.maximum(s, 0.0)
        env = (pos / (2 * tau)) ** 2 * np.exp(2.0 - pos / tau)  # peak 1 at s = 2 tau
        wave = np.cos(2 * np.pi * self.freqs[:, None] * (s - 2 * tau) + self.phases[:, None])
        return env * wave * self._taper

    def weights(self, stim_id: str) -> np.ndarray:
        """The mixture weights ``[K]`` of ``stim_id``: its class's plus the image's perturbation."""
        label = self.stimuli.label(stim_id)
        w = self.class_weights[label]
        if self.image_jitter > 0:
            parsed = self.stimuli.parse_id(stim_id)
            index = parsed[1] if parsed else 0
            irng = np.random.default_rng([self.seed, 0x1A6E, label, index])
            w = w + self.image_jitter * irng.standard_normal(self.n_components)
        return w

    @property
    def _scale(self) -> float:
        return self.snr * DEFAULT_AMPLITUDE_UV * _UV

    # ---------------------------------------------------------------- public
    def components(self, stim_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Maps ``[C, K]`` (unit peak) and weighted time courses ``[K, L]`` (volts, before ``snr``)."""
        tcs = self.time_courses() * self.weights(stim_id)[:, None]
        return self.topographies, tcs * (DEFAULT_AMPLITUDE_UV * _UV)

    def evoked(self, stim_id: str) -> np.ndarray:
        """The mean response to ``stim_id``: ``float64 [C, L]`` volts, ``L`` = 0.8 s of samples."""
        topos, tcs = self.components(stim_id)
        return self.snr * (topos @ tcs)

    def trial(self, stim_id: str, rng: np.random.Generator) -> np.ndarray:
        """One trial's response ``float64 [C, L]``: :meth:`evoked` with latency and amplitude
        jitter drawn from ``rng`` (common and per component)."""
        K = self.n_components
        delays = rng.normal(0.0, self.latency_jitter) + rng.normal(
            0.0, self.latency_jitter_rel * self.latencies
        )
        gains = np.exp(rng.normal(0.0, self.gain_jitter) + rng.normal(0.0, self.gain_jitter, K))
        tcs = self.time_courses(delays) * (self.weights(stim_id) * gains)[:, None]
        return self._scale * (self.topographies @ tcs)


class ComponentsBackground:
    """Background EEG of :class:`ComponentsModel` sessions: :class:`BackgroundNoise` with
    drift, plus one bad channel. Same ``generate(n)`` interface, continuous across calls.

    Parameters
    ----------
    ch_names : list of str
        Channels (names from ``montage``).
    sfreq : float
        Sampling rate (Hz).
    seed : int
        Seed of the session (noise and which channel is bad).
    line_freq : float | None
        Mains frequency (Hz); ``None`` for none.
    scale : float
        Multiplies the whole background.
    montage : str
        MNE standard montage of the channels.
    bad_channels : int
        How many channels have poor contact (0 for none; at most half the channels).
    bad_uv : float
        RMS (microvolts) of a bad channel's extra broad-band noise (0-100 Hz, so that its
        share inside the decoding band does not depend on the sampling rate).
    """

    def __init__(
        self,
        ch_names: list[str],
        sfreq: float,
        seed: int = 0,
        line_freq: float | None = 50.0,
        scale: float = 1.0,
        montage: str = MONTAGE_NAME,
        *,
        bad_channels: int = 1,
        bad_uv: float = 80.0,
    ) -> None:
        C = len(ch_names)
        if not 0 <= bad_channels <= C // 2:
            raise ValueError(f"bad_channels must be in 0..{C // 2} for {C} channels, got {bad_channels}")
        # its own noise stream: the same session seed does not give the attributes
        # subject's background
        noise_seed = int(np.random.SeedSequence([int(seed), 0xC0B6]).generate_state(1)[0])
        self._base = BackgroundNoise(
            C, sfreq, seed=noise_seed, line_freq=line_freq, drift=True, ch_names=list(ch_names),
            scale=1.0, montage=montage,
        )
        self.ch_names = list(ch_names)
        self.sfreq = float(sfreq)
        self.line_freq = None if line_freq is None else float(line_freq)
        self.scale = float(scale)
        rng = np.random.default_rng([int(seed), 0xBAD])
        self.bad = sorted(int(i) for i in rng.choice(C, size=bad_channels, replace=False))
        self.bad_names = [self.ch_names[i] for i in self.bad]
        self._bad_uv = float(bad_uv)
        self._bad_line_phase = rng.uniform(0, 2 * np.pi, size=len(self.bad))
        self._bad_sos = signal.butter(2, min(100.0, 0.45 * self.sfreq), fs=self.sfreq, output="sos")
        self._bad_gain = 1.0 / _unit_response_std(*signal.sos2tf(self._bad_sos))
        self._bad_zi = np.zeros((self._bad_sos.shape[0], len(self.bad), 2))
        # one generator per quantity, drawn time-major: the samples do not depend on how
        # the stream is cut into generate() calls
        self._rng_white = np.random.default_rng([int(seed), 0xBAD, 1])
        self._rng_pop = np.random.default_rng([int(seed), 0xBAD, 2])
        self._pop_rate = 0.2  # per second: sudden electrode pops (steps that decay)
        self._pop_level = np.zeros(len(self.bad))
        self.n_generated = 0

    @property
    def n_channels(self) -> int:
        return len(self.ch_names)

    def generate(self, n: int, dtype: type = np.float64) -> np.ndarray:
        """The next ``n`` samples, ``[n_channels, n]`` volts (continues the last call)."""
        x = self._base.generate(n)
        if self.bad and n > 0:
            m = len(self.bad)
            # broad-band noise drawn time-major: independent of how the stream is chunked
            w = self._rng_white.standard_normal((n, m)).T
            w, self._bad_zi = signal.sosfilt(self._bad_sos, w, axis=1, zi=self._bad_zi)
            w *= self._bad_gain * self._bad_uv * _UV
            # pops: a step of +-100-300 uV decaying with ~0.5 s, Poisson in time
            u = self._rng_pop.random((n, m, 3)).transpose(1, 2, 0)  # [m, 3, n]
            steps = (u[:, 0] < self._pop_rate / self.sfreq) * (100 + 200 * u[:, 1]) * np.where(
                u[:, 2] < 0.5, -1.0, 1.0
            )
            a = np.exp(-1.0 / (0.5 * self.sfreq))
            level, _ = signal.lfilter([1.0], [1.0, -a], steps * _UV, axis=1,
                                      zi=(a * self._pop_level)[:, None])
            self._pop_level = level[:, -1].copy()
            x[self.bad] += w + level
            if self.line_freq is not None and self.line_freq < self.sfreq / 2:
                t = (self.n_generated + np.arange(n)) / self.sfreq
                x[self.bad] += 40 * _UV * np.sin(
                    2 * np.pi * self.line_freq * t[None, :] + self._bad_line_phase[:, None]
                )
        self.n_generated += n
        if self.scale != 1.0:
            x *= self.scale
        return x.astype(dtype, copy=False)
