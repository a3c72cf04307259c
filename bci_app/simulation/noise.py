"""Background EEG of the virtual subject: stateful, continuous across calls, in volts.

The background is a mixture of latent sources projected through smooth scalp
topographies, plus per-channel terms:

- 1/f ("pink") activity: 200 latent sources with topographies from focal to broad,
  made by filtering white noise with a 3-pole IIR filter whose response approximates
  1/f, plus a small independent 1/f term per electrode. Real background EEG comes from
  many distributed generators, so its spatial covariance is full rank: with a handful of
  sources a spatially whitened linear decoder would cancel the background almost
  entirely and the simulated subject would be far easier than a real one;
- alpha bursts (~10 Hz) over occipital cortex, left and right, whose amplitude waxes
  and wanes (narrow-band noise times a slow envelope);
- eye blinks: ~200-400 ms positive deflections of ~100 uV at frontal channels
  (Poisson, ~0.25 per second);
- line noise at ``line_freq`` (and its 3rd harmonic), a per-channel amplitude;
- white sensor noise;
- with ``drift=True``: a slow random walk plus sub-Hz oscillations (sweat, electrode
  drift), which makes block designs leak (see :func:`simulate_raw`).

All state (filter memories, blink tails, phase of the line noise) is carried from one
:meth:`BackgroundNoise.generate` call to the next, so a live stream produced chunk by
chunk is continuous.
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

# Paul Kellet's economy pink-noise filter (-3 dB/octave over the audio band).
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])

_UV = 1e-6


def _unit_response_std(b: np.ndarray, a: np.ndarray, n: int = 200_000) -> float:
    imp = np.zeros(n)
    imp[0] = 1.0
    return float(np.sqrt(np.sum(signal.lfilter(b, a, imp) ** 2)))


class BackgroundNoise:
    """Ongoing EEG with realistic magnitude (tens of microvolts), in volts.

    Parameters
    ----------
    n_channels : int
        Number of channels (the first ``n_channels`` of ``montage`` unless
        ``ch_names`` is given).
    sfreq : float
        Sampling rate (Hz).
    seed : int
        Seed of the noise; the same seed and the same sequence of ``generate`` calls
        give the same samples.
    line_freq : float | None
        Mains frequency (Hz); ``None`` for none.
    drift : bool
        Add slow drift (random walk + sub-Hz oscillations).
    ch_names : list of str | None
        Channel names from ``montage`` (for the topographies).
    scale : float
        Multiplies the whole background (1.0: the calibrated default).
    montage : str
        MNE standard montage of the channels (default ``biosemi128``).
    """

    n_latent = 200
    local_pink_uv = 3.0  # independent 1/f per electrode (skin, electrode-gel interface)

    def __init__(
        self,
        n_channels: int = 128,
        sfreq: float = 1000.0,
        seed: int = 0,
        line_freq: float | None = 50.0,
        drift: bool = False,
        ch_names: list[str] | None = None,
        scale: float = 1.0,
        montage: str = MONTAGE_NAME,
    ) -> None:
        if ch_names is None:
            names = montage_channels(montage)
            if not 1 <= n_channels <= len(names):
                raise ValueError(
                    f"n_channels must be in 1..{len(names)} ({montage}) without ch_names, got "
                    f"{n_channels}; pass ch_names from montage_channels({montage!r}) to choose "
                    "channels"
                )
            ch_names = names[:n_channels]
        elif len(ch_names) != n_channels:
            raise ValueError(f"got {len(ch_names)} ch_names for n_channels={n_channels}")
        if sfreq <= 0:
            raise ValueError(f"sfreq must be > 0 Hz, got {sfreq}")
        self.n_channels = int(n_channels)
        self.sfreq = float(sfreq)
        self.seed = int(seed)
        self.line_freq = None if line_freq is None else float(line_freq)
        self.drift = bool(drift)
        self.scale = float(scale)
        self.ch_names = list(ch_names)
        # one generator per component, drawn time-major: the samples do not depend on
        # how the stream is cut into generate() calls
        self._rngs = {
            k: np.random.default_rng([self.seed, i])
            for i, k in enumerate(("pink", "alpha", "env", "blink", "sensor", "drift"))
        }
        mrng = np.random.default_rng([self.seed, 0x70])  # fixed topographies
        self.montage = montage
        dirs = channel_directions(self.ch_names, montage)
        C = self.n_channels

        # -- latent 1/f sources: broad random blobs over the scalp
        pats = []
        for _ in range(self.n_latent):
            centre = direction(mrng.uniform(0, 360), mrng.uniform(-10, 80))
            w = mrng.uniform(0.25, 1.0)
            pats.append(scalp_blob(dirs, centre, w) * mrng.choice([-1, 1]))
        # same total power as 24 broad sources of 8 uV
        self._pink_mix = np.stack(pats, axis=1) * (8.0 * _UV * np.sqrt(24 / self.n_latent))
        self._pink_mix = np.concatenate(
            [self._pink_mix, np.eye(C) * (self.local_pink_uv * _UV)], axis=1
        )  # [C, K + C]: latent sources, then one local source per electrode
        self._pink_gain = 1.0 / _unit_response_std(_PINK_B, _PINK_A)
        self._n_pink = self.n_latent + C
        self._pink_zi = np.zeros((self._n_pink, len(_PINK_A) - 1))
        # warm the pink filters up so the first samples are stationary
        self._pink(int(20 * self.sfreq))

        # -- alpha: two occipital sources
        nyq = self.sfreq / 2
        self._alpha_sos = signal.butter(2, [8.5 / nyq, 11.5 / nyq], btype="band", output="sos")
        self._alpha_gain = 1.0 / _unit_response_std(*signal.sos2tf(self._alpha_sos))
        self._alpha_zi = np.zeros((self._alpha_sos.shape[0], 2, 2))
        self._env_sos = signal.butter(2, 0.4 / nyq, output="sos")
        self._env_gain = 1.0 / _unit_response_std(*signal.sos2tf(self._env_sos), n=400_000)
        self._env_zi = np.zeros((self._env_sos.shape[0], 2, 2))
        self._alpha_mix = np.stack(
            [
                scalp_blob(dirs, direction(200, 10), 0.45),
                scalp_blob(dirs, direction(160, 10), 0.45),
            ],
            axis=1,
        ) * (8.0 * _UV)
        self._alpha(int(10 * self.sfreq))

        # -- blinks: frontal, decaying towards the back
        self._blink_topo = scalp_blob(dirs, direction(0, -10), 0.55) * (100.0 * _UV)
        self._blink_rate = 0.25  # per second
        self._blink_carry = np.zeros(0)
        self._next_blink = int(self._rngs["blink"].exponential(self.sfreq / self._blink_rate))

        # -- line noise and sensor noise
        self._line_amp = mrng.uniform(2.0, 8.0, size=C) * _UV
        self._line_phase = mrng.uniform(0, 2 * np.pi, size=C)
        self._sensor_sd = mrng.uniform(1.0, 2.5, size=C) * _UV

        # -- slow drift
        self._drift_mix = np.stack(
            [
                scalp_blob(dirs, direction(mrng.uniform(0, 360), mrng.uniform(0, 60)), 0.9)
                for _ in range(4)
            ],
            axis=1,
        ) * (20.0 * _UV)
        self._drift_state = np.zeros(4)
        self._drift_freqs = mrng.uniform(0.02, 0.3, size=(C, 2))
        self._drift_amp = mrng.uniform(5.0, 15.0, size=(C, 2)) * _UV
        self._drift_phase = mrng.uniform(0, 2 * np.pi, size=(C, 2))

        self.n_generated = 0

    # ------------------------------------------------------------------ parts
    def _pink(self, n: int) -> np.ndarray:
        w = self._rngs["pink"].standard_normal((n, self._n_pink)).T
        y, self._pink_zi = signal.lfilter(_PINK_B, _PINK_A, w, axis=1, zi=self._pink_zi)
        return y * self._pink_gain

    def _alpha(self, n: int) -> np.ndarray:
        w = self._rngs["alpha"].standard_normal((n, 2)).T
        a, self._alpha_zi = signal.sosfilt(self._alpha_sos, w, axis=1, zi=self._alpha_zi)
        e, self._env_zi = signal.sosfilt(
            self._env_sos, self._rngs["env"].standard_normal((n, 2)).T, axis=1, zi=self._env_zi
        )
        env = np.maximum(0.0, 0.6 + e * self._env_gain)  # bursts: envelope often near zero
        return a * self._alpha_gain * env

    def _blinks(self, n: int) -> np.ndarray:
        fs = self.sfreq
        length = int(0.6 * fs)
        out = np.zeros(n + length)
        carry = self._blink_carry
        out[: len(carry)] += carry
        rng = self._rngs["blink"]
        t = np.arange(length) / fs
        end = self.n_generated + n
        while self._next_blink < end:
            start = self._next_blink - self.n_generated
            dur = rng.uniform(0.2, 0.4)
            amp = rng.uniform(0.6, 1.4)
            shape = np.where(t < dur, np.sin(np.pi * np.clip(t / dur, 0, 1)) ** 2, 0.0)
            out[start : start + length] += amp * shape
            self._next_blink += 1 + int(rng.exponential(fs / self._blink_rate))
        self._blink_carry = out[n:].copy()
        return out[:n]

    def _line(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Line noise as a rank-4 product: per-channel weights ``[C, 4]`` x waves ``[4, n]``.

        ``a sin(w t + p) = a cos(p) sin(w t) + a sin(p) cos(w t)`` (same for the 3rd
        harmonic), which is much cheaper than a sine per channel and sample.
        """
        t = (self.n_generated + np.arange(n)) / self.sfreq
        ph = 2 * np.pi * self.line_freq * t
        waves = np.stack([np.sin(ph), np.cos(ph), np.sin(3 * ph), np.cos(3 * ph)])
        a, p = self._line_amp, self._line_phase
        weights = np.stack(
            [a * np.cos(p), a * np.sin(p), 0.2 * a * np.cos(2 * p), 0.2 * a * np.sin(2 * p)], axis=1
        )
        if 3 * self.line_freq >= self.sfreq / 2:  # an amplifier's anti-alias filter removes it
            weights[:, 2:] = 0.0
        return weights, waves

    def _drift(self, n: int) -> np.ndarray:
        # leaky random walk (time constant ~20 s), unit-ish variance
        a = np.exp(-1.0 / (20.0 * self.sfreq))
        w = self._rngs["drift"].standard_normal((n, 4)).T * np.sqrt(1 - a * a)
        walk, zf = signal.lfilter([1.0], [1.0, -a], w, axis=1, zi=(a * self._drift_state)[:, None])
        self._drift_state = walk[:, -1].copy()
        t = (self.n_generated + np.arange(n)) / self.sfreq
        osc = np.einsum(
            "ck,ckn->cn",
            self._drift_amp,
            np.sin(2 * np.pi * self._drift_freqs[:, :, None] * t + self._drift_phase[:, :, None]),
        )
        return self._drift_mix @ walk + osc

    # ------------------------------------------------------------------ public
    def generate(self, n: int, dtype: type = np.float64) -> np.ndarray:
        """The next ``n`` samples, ``[n_channels, n]`` volts (continues the last call)."""
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0 samples, got {n}")
        sources = [self._pink(n), self._alpha(n), self._blinks(n)[None, :]]
        mix = [self._pink_mix, self._alpha_mix, self._blink_topo[:, None]]
        if self.line_freq is not None:
            weights, waves = self._line(n)
            sources.append(waves)
            mix.append(weights)
        x = np.concatenate(mix, axis=1) @ np.concatenate(sources, axis=0)
        x += self._sensor_sd[:, None] * self._rngs["sensor"].standard_normal((n, self.n_channels)).T
        if self.drift:
            x += self._drift(n)
        self.n_generated += n
        if self.scale != 1.0:
            x *= self.scale
        return x.astype(dtype, copy=False)
