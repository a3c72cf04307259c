"""A real LSL EEG outlet pushing a ramp (channel 0 = running sample number) in real time."""

from __future__ import annotations

import threading

import numpy as np
from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock


class RampOutlet:
    """Pushes ``n_channels`` channels at ``sfreq``; channel 0 holds the sample number ``k``.

    Sample ``k`` is stamped ``t0 + k / sfreq``; ``time_of(k)`` gives it.
    """

    def __init__(self, name, source_id, n_channels=8, sfreq=500.0, chunk=10, t0=None, k0=0):
        self.name, self.source_id = name, source_id
        self.n_channels, self.sfreq, self.chunk = n_channels, float(sfreq), chunk
        self.t0 = local_clock() if t0 is None else t0
        self.k = k0
        self._stop = threading.Event()
        info = StreamInfo(name, "EEG", n_channels, sfreq, "float32", source_id)
        info.set_channel_names(["ramp"] + [f"ch{i}" for i in range(1, n_channels)])
        self.outlet = StreamOutlet(info, chunk_size=chunk)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def time_of(self, k: int) -> float:
        return self.t0 + k / self.sfreq

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        rng = np.random.default_rng(0)
        while not self._stop.is_set():
            # keep the newest pushed sample at "now"
            due = self.time_of(self.k + self.chunk - 1)
            wait = due - local_clock()
            if wait > 0 and self._stop.wait(wait):
                break
            ks = np.arange(self.k, self.k + self.chunk)
            x = rng.standard_normal((self.chunk, self.n_channels)).astype(np.float32) * 1e-5
            x[:, 0] = ks
            self.outlet.push_chunk(x, timestamp=self.time_of(ks))
            self.k += self.chunk

    def stop(self, delete: bool = True):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if delete:
            self.outlet._del()


def marker_outlet(name, source_id):
    info = StreamInfo(name, "Markers", 1, 0.0, "string", source_id)
    return StreamOutlet(info)
