"""The virtual subject's stimulus-evoked responses (pure numpy, deterministic).

The evoked response to a demo image is a sum of spatio-temporal components, each a
scalp topography (smooth blobs on the ``biosemi128`` head) times a time course
(Gaussian-windowed waves between ~60 and ~500 ms):

- a generic visual response (P1 ~100 ms, N1 ~170 ms, P2/P3 ~250-400 ms) over
  occipital cortex, contralateral to the image's horizontal position (an object on
  the left drives the right hemisphere) and shifted up/down with its vertical
  position (lower field -> more dorsal/parietal); larger objects give larger and
  earlier responses;
- a shape signature (8 shapes) and a colour signature (5 colours), each with its own
  topography and timing (colour earlier, ~80-220 ms; shape ~120-450 ms);
- a class signature (each of the 40 classes its own spatio-temporal pattern);
- a small image-specific term (each image differs a little from its class).

``snr`` multiplies the whole evoked response; ``snr=1.0`` is calibrated so that the
linear baseline (:class:`bci_app.models.baseline.LinearBaseline`) reaches roughly
35-60 % single-trial 40-way accuracy with the app's default pre-processing (measured
with the full-rank background of :mod:`bci_app.simulation.noise`: 0.46 on the 160
validation and 0.40 on the 400 test trials of ``synthetic:2000``; at ``snr=1.4`` /
``2.0`` the calibration script gives 0.54 / 0.80). A spatially whitened decoder does
not beat it by much, as with real EEG, because the background is not low-rank.

The subject (topographies, time courses) is fixed by ``seed``; the session's noise
and trial-to-trial variability are chosen elsewhere (:func:`simulate_raw`,
``VirtualSubject``), so a model trained on one simulated session works on another
session of the same subject.
"""

from __future__ import annotations

import numpy as np

from bci_app.simulation.montage import (
    MONTAGE_NAME,
    channel_directions,
    direction,
    montage_channels,
    scalp_blob,
)
from bci_app.stimuli import COLOURS, SHAPES, DemoStimulusSet

_UV = 1e-6

#: length of the evoked response, seconds
EVOKED_SECONDS = 0.8

#: overall gain that calibrates ``snr=1.0`` (see the module docstring)
DEFAULT_GAIN = 2.47


def _wave(t: np.ndarray, latency: float, width: float, freq: float, phase: float) -> np.ndarray:
    """A Gaussian-windowed cosine (``freq=0``: a plain Gaussian bump)."""
    return np.exp(-0.5 * ((t - latency) / width) ** 2) * np.cos(
        2 * np.pi * freq * (t - latency) + phase
    )


class SubjectModel:
    """Evoked responses of one virtual subject to the demo stimulus set.

    Parameters
    ----------
    stimuli : DemoStimulusSet | None
        The stimulus set (default ``DemoStimulusSet()``).
    snr : float
        Multiplies the evoked responses (1.0 is the calibrated default).
    seed : int
        Identity of the subject (topographies and time courses).
    sfreq : float
        Sampling rate (Hz).
    ch_names : list of str | None
        Channels (names from ``montage``), default all of them.
    montage : str
        MNE standard montage the channels are placed on (default ``biosemi128``).
    """

    def __init__(
        self,
        stimuli: DemoStimulusSet | None = None,
        snr: float = 1.0,
        seed: int = 0,
        sfreq: float = 1000.0,
        ch_names: list[str] | None = None,
        montage: str = MONTAGE_NAME,
    ) -> None:
        if snr < 0:
            raise ValueError(f"snr must be >= 0, got {snr}")
        if sfreq <= 0:
            raise ValueError(f"sfreq must be > 0 Hz, got {sfreq}")
        self.stimuli = stimuli if stimuli is not None else DemoStimulusSet()
        self.snr = float(snr)
        self.seed = int(seed)
        self.sfreq = float(sfreq)
        self.montage = montage
        self.ch_names = list(ch_names) if ch_names is not None else montage_channels(montage)
        self._dirs = channel_directions(self.ch_names, montage)
        self.n_times = int(round(EVOKED_SECONDS * self.sfreq))
        self.times = np.arange(self.n_times) / self.sfreq
        # responses live in ~60-500 ms: cosine ramps 40->70 ms and 480->600 ms
        t = self.times
        up = np.clip((t - 0.040) / 0.030, 0, 1)
        down = np.clip((0.600 - t) / 0.120, 0, 1)
        self._envelope = (np.sin(0.5 * np.pi * up) * np.sin(0.5 * np.pi * down)) ** 2
        rng = np.random.default_rng([self.seed, 0x5EE])
        self._shape_comp = [self._random_component(rng, 0.12, 0.45, 2, 3.0) for _ in SHAPES]
        self._colour_comp = [self._random_component(rng, 0.08, 0.22, 1, 2.5) for _ in COLOURS]
        self._class_comp = [
            self._random_component(rng, 0.10, 0.45, 2, 2.5) for _ in range(self.stimuli.n_classes)
        ]

    # ---------------------------------------------------------------- building blocks
    def _random_topography(self, rng: np.random.Generator, n_blobs: int = 2) -> np.ndarray:
        topo = np.zeros(len(self.ch_names))
        for _ in range(n_blobs):
            # mostly posterior and lateral (visual, parietal, temporal cortex)
            az = rng.uniform(90, 270)
            el = rng.uniform(-10, 60)
            topo += (
                rng.choice([-1.0, 1.0])
                * rng.uniform(0.6, 1.0)
                * scalp_blob(self._dirs, direction(az, el), rng.uniform(0.3, 0.6))
            )
        return topo / max(np.abs(topo).max(), 1e-12)

    def _random_component(
        self, rng: np.random.Generator, lat_lo: float, lat_hi: float, n_waves: int, amp_uv: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(topography [C], time course [L]) with peak amplitude ``amp_uv``."""
        topo = self._random_topography(rng)
        tc = np.zeros(self.n_times)
        for _ in range(n_waves):
            tc += _wave(
                self.times,
                rng.uniform(lat_lo, lat_hi),
                rng.uniform(0.025, 0.07),
                rng.uniform(0.0, 8.0),
                rng.uniform(0, 2 * np.pi),
            )
        tc /= max(np.abs(tc).max(), 1e-12)
        return topo, tc * amp_uv * _UV

    def _visual(self, x: float, y: float, size: float) -> tuple[np.ndarray, np.ndarray]:
        """Position- and size-dependent generic visual response (topography, time course)."""
        # contralateral: object on the left (x < 0.5) -> right hemisphere (+x, azimuth < 180)
        az = 180.0 - (0.5 - x) * 110.0
        # lower visual field (y > 0.5) -> dorsal (higher elevation)
        el = 5.0 + (y - 0.5) * 70.0
        topo = scalp_blob(self._dirs, direction(az, el), 0.35)
        rel = (size - 0.25) / 0.09  # about -1 .. 1 over the demo set's sizes
        amp = 1.0 + 0.35 * rel
        shift = -0.012 * rel  # larger -> earlier
        t = self.times
        tc = (
            4.0 * _wave(t, 0.100 + shift, 0.018, 0.0, 0.0)
            - 6.0 * _wave(t, 0.170 + shift, 0.028, 0.0, 0.0)
            + 3.0 * _wave(t, 0.300 + 1.5 * shift, 0.060, 0.0, 0.0)
        )
        return topo, amp * tc * _UV

    # ---------------------------------------------------------------- public
    def components(self, stim_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Topographies ``[C, K]`` and time courses ``[K, L]`` (volts, before ``snr``)."""
        p = self.stimuli.params(stim_id)
        shape_i = SHAPES.index(p.shape)
        colour_i = list(COLOURS).index(p.colour)
        comps = [
            self._visual(p.x, p.y, p.size),
            self._shape_comp[shape_i],
            self._colour_comp[colour_i],
            self._class_comp[p.label],
        ]
        parsed = self.stimuli.parse_id(stim_id)
        index = parsed[1] if parsed else 0
        irng = np.random.default_rng([self.seed, 0x1A6, p.label, index])
        comps.append(self._random_component(irng, 0.1, 0.45, 1, 1.0))
        topos = np.stack([c[0] for c in comps], axis=1)
        tcs = np.stack([c[1] for c in comps], axis=0) * self._envelope
        return topos, tcs

    def evoked(self, stim_id: str) -> np.ndarray:
        """The evoked response to ``stim_id``: ``float64 [C, L]`` volts, ``L`` = 0.8 s of samples."""
        topos, tcs = self.components(stim_id)
        return (self.snr * DEFAULT_GAIN) * (topos @ tcs)
