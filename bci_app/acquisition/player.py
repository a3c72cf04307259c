"""Replay a recorded session (or any FIF with annotations) over LSL: EEG + string markers.

Timestamps follow the recording's own time base: sample ``k`` is stamped
``t0 + k / sfreq`` and a marker at ``onset`` seconds is stamped ``t0 + onset``, whatever
the replay speed (speed only changes how fast the samples are pushed). The epocher
therefore places every marker on the same sample as offline epoching of the file
(``preprocessing.epoch_raw``). Lost data (``BAD_gap`` annotations, joins marked ``BAD
boundary``) is not sent as markers: the time stamps jump by the samples lost there (at
least one), so the receiving end counts the gap and rejects the windows across it, as
offline epoching does.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from bci_app.preprocessing.epochs import (
    _annotation_times,
    discontinuities,
    is_marker,
    time_to_sample,
)

logger = logging.getLogger(__name__)


class SessionPlayer:
    """Stream ``path`` (session directory or .fif) as an EEG stream and a marker stream.

    Parameters
    ----------
    path : path or mne Raw
        A session directory (see :mod:`bci_app.acquisition.recorder`), a .fif file or a
        loaded raw.
    speed : float
        Replay speed factor (2.0 = twice as fast as recorded).
    name, source_id : str
        EEG stream name and source id; the marker stream is ``f"{name}-markers"`` with
        source id ``f"{source_id}-markers"`` and type ``"Markers"``.
    chunk_size : int
        Samples per push.
    """

    def __init__(
        self,
        path,
        speed: float = 1.0,
        name: str = "bci-app-replay",
        source_id: str | None = None,
        *,
        chunk_size: int = 10,
        stype: str = "EEG",
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        from bci_app.acquisition.recorder import read_session

        if isinstance(path, str | Path):
            raw = read_session(path)
        else:
            raw = path
        self.raw = raw
        self.data = raw.get_data()
        self.sfreq = float(raw.info["sfreq"])
        self.ch_names = list(raw.ch_names)
        times = _annotation_times(raw)
        desc = list(raw.annotations.description)
        keep = [i for i, d in enumerate(desc) if is_marker(d)]
        order = sorted(keep, key=lambda i: times[i])
        # samples lost before each sample (stamps jump there; a join loses at least one)
        self.shift = np.zeros(self.data.shape[1], dtype=np.int64)
        for k, lost in discontinuities(raw):
            if 0 < k < self.shift.size:
                self.shift[k:] += max(1, lost)
        self.marker_times = np.array([times[i] for i in order], dtype=np.float64)
        ks = np.clip(time_to_sample(self.marker_times, self.sfreq), 0, max(0, self.shift.size - 1))
        self.marker_times = self.marker_times + self.shift[ks] / self.sfreq
        self.marker_strings = [desc[i] for i in order]
        self.speed = float(speed)
        self.name = name
        self.source_id = source_id or f"bci-app-replay-{uuid.uuid4().hex[:8]}"
        self.stype = stype
        self.chunk_size = int(chunk_size)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.done = threading.Event()
        self.n_pushed = 0
        self.n_markers_pushed = 0
        self.t0: float | None = None
        self._eeg = self._mk = None

    @property
    def n_times(self) -> int:
        return self.data.shape[1]

    def open(self) -> SessionPlayer:
        """Create the two outlets (visible on the network) without pushing anything yet."""
        if self._eeg is None:
            self._make_outlets()
        return self

    def _make_outlets(self) -> None:
        import pylsl
        from mne.io.constants import FIFF

        si = pylsl.StreamInfo(
            self.name, self.stype, len(self.ch_names), self.sfreq, pylsl.cf_float32, self.source_id
        )
        si.set_channel_labels(self.ch_names)
        si.set_channel_types(self.raw.get_channel_types())
        si.set_channel_units(
            ["volts" if ch["unit"] == FIFF.FIFF_UNIT_V else "none" for ch in self.raw.info["chs"]]
        )
        self._eeg = pylsl.StreamOutlet(si, chunk_size=self.chunk_size)
        mi = pylsl.StreamInfo(
            f"{self.name}-markers",
            "Markers",
            1,
            pylsl.IRREGULAR_RATE,
            pylsl.cf_string,
            f"{self.source_id}-markers",
        )
        self._mk = pylsl.StreamOutlet(mi)

    def start(self, wait_for_consumers: float | None = 10.0) -> SessionPlayer:
        """Open the outlets if needed and start pushing (after both have a consumer, if asked)."""
        self.open()
        if wait_for_consumers:
            for outlet in (self._eeg, self._mk):
                if not outlet.wait_for_consumers(timeout=wait_for_consumers):
                    logger.warning(
                        "replay %r: no consumer after %s s", self.name, wait_for_consumers
                    )
        self._thread = threading.Thread(target=self._run, name="bci-session-player", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from pylsl import local_clock

        try:
            sf, n, cs = self.sfreq, self.n_times, self.chunk_size
            # a little in the past, so the first marker's sample is never "in the future"
            t0 = local_clock()
            self.t0 = t0
            wall0 = time.perf_counter()
            mi = 0
            for start in range(0, n, cs):
                if self._stop.is_set():
                    break
                stop = min(n, start + cs)
                # push when the chunk's last sample is due at this speed
                due = wall0 + (stop - 1) / (sf * self.speed)
                delay = due - time.perf_counter()
                if delay > 0:
                    self._stop.wait(delay)
                ts = t0 + (np.arange(start, stop) + self.shift[start:stop]) / sf
                end = (stop + self.shift[stop - 1]) / sf  # one period after the last stamp
                while mi < len(self.marker_times) and self.marker_times[mi] < end:
                    self._mk.push_sample(
                        [self.marker_strings[mi]], timestamp=t0 + self.marker_times[mi]
                    )
                    mi += 1
                    self.n_markers_pushed += 1
                self._eeg.push_chunk(
                    np.ascontiguousarray(self.data[:, start:stop].T, dtype=np.float32), timestamp=ts
                )
                self.n_pushed = stop
            while mi < len(self.marker_times) and not self._stop.is_set():
                self._mk.push_sample(
                    [self.marker_strings[mi]], timestamp=t0 + self.marker_times[mi]
                )
                mi += 1
                self.n_markers_pushed += 1
        finally:
            self.done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything has been pushed; False on timeout."""
        return self.done.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        # pylsl destroys an outlet with its last reference: the stream leaves the network
        self._eeg = self._mk = None

    def __enter__(self) -> SessionPlayer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
