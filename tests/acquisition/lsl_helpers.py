"""Real LSL peers for the tests: pylsl outlets in this process, mne-lsl's PlayerLSL in another.

The app loads one liblsl (pylsl's); mne-lsl bundles its own, so its player runs in a
subprocess, as a third-party program on the same machine would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from contextlib import contextmanager

import numpy as np
from pylsl import IRREGULAR_RATE, StreamInfo, StreamOutlet, cf_float32, cf_string, local_clock


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
        info = StreamInfo(name, "EEG", n_channels, sfreq, cf_float32, source_id)
        info.set_channel_labels(["ramp"] + [f"ch{i}" for i in range(1, n_channels)])
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
            self.outlet = None  # pylsl destroys the outlet: the stream leaves the network


def marker_outlet(name, source_id):
    info = StreamInfo(name, "Markers", 1, IRREGULAR_RATE, cf_string, source_id)
    return StreamOutlet(info)


def eeg_outlet(name, source_id, ch_names, sfreq, *, units=None, types=None, stype="EEG"):
    """A plain pylsl EEG outlet with channel labels, and units/types when given."""
    info = StreamInfo(name, stype, len(ch_names), sfreq, cf_float32, source_id)
    info.set_channel_labels(list(ch_names))
    if types is not None:
        info.set_channel_types(types)
    if units is not None:
        info.set_channel_units(units)
    return StreamOutlet(info, chunk_size=0)


_PLAYER = textwrap.dedent(
    """
    import sys, time
    from mne_lsl.player import PlayerLSL
    fname, name, sid, encoding = sys.argv[1:5]
    player = PlayerLSL(fname, chunk_size=10, n_repeat=1, name=name, source_id=sid,
                       annotations=True, annotations_encoding=encoding)
    player.start()
    print("started", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    player.stop()
    """
)


@contextmanager
def player_process(fname, name, source_id, encoding="string"):
    """mne-lsl's ``PlayerLSL`` streaming ``fname`` once, in its own Python process."""
    err = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads could fill and block
    proc = subprocess.Popen(
        [sys.executable, "-c", _PLAYER, str(fname), name, source_id, encoding],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        env={**os.environ, "MNE_LOGGING_LEVEL": "error"},
    )
    try:
        said = []
        for line in proc.stdout:  # MNE may print before the player says it started
            said.append(line)
            if line.strip() == "started":
                break
        else:
            proc.wait(10)
            err.seek(0)
            raise RuntimeError(f"PlayerLSL process did not start: {''.join(said)} {err.read()}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        err.close()
