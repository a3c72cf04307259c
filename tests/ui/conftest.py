"""GUI tests run offscreen with real widgets."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import bci_app.ui.qt  # noqa: E402,F401 - refuses PySide6 6.12 on Python 3.11 with a clear error

pytestmark = pytest.mark.gui


class LoopbackEEG:
    """A real LSL EEG outlet (128 ch, 1 kHz, volts) fed from a thread at real time.

    ``stop()`` destroys the outlet (the stream disappears); ``start()`` again makes a
    new outlet with the same source id (the stream returns). With ``counter``, channel 0
    carries the running sample number (exact in float32 up to 2**24), to check continuity."""

    def __init__(self, name: str, source_id: str, ch_names: list[str], sfreq: float = 1000.0,
                 chunk: int = 10, seed: int = 0, counter: bool = False) -> None:
        self.name, self.source_id, self.ch_names, self.sfreq = name, source_id, ch_names, sfreq
        self.chunk = chunk
        self.rng = np.random.default_rng(seed)
        self.counter = counter
        self._thread = None
        self._stop = threading.Event()
        self.outlet = None
        self.pushed = 0

    def start(self) -> LoopbackEEG:
        import pylsl

        info = pylsl.StreamInfo(self.name, "EEG", len(self.ch_names), self.sfreq, pylsl.cf_float32, self.source_id)
        chs = info.desc().append_child("channels")
        for ch in self.ch_names:
            chs.append_child("channel").append_child_value("label", ch)
        self.outlet = pylsl.StreamOutlet(info, self.chunk)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        import pylsl

        t0 = pylsl.local_clock()
        n = 0
        while not self._stop.is_set():
            due = int((pylsl.local_clock() - t0) * self.sfreq)
            if due - n >= self.chunk:
                k = due - n
                x = (self.rng.standard_normal((k, len(self.ch_names))) * 10e-6).astype(np.float32)
                if self.counter:
                    x[:, 0] = self.pushed + np.arange(k)
                ts = t0 + (n + np.arange(k)) / self.sfreq
                self.outlet.push_chunk(x, float(ts[-1]))
                n += k
                self.pushed += k
            else:
                time.sleep(0.003)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self.outlet = None  # destroys the outlet: the stream is gone
