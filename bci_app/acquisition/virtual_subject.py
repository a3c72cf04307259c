"""The virtual subject: a live EEG amplifier over LSL that "sees" the stimuli.

By default it wears the seed paper's cap (128 channels, ``biosemi128``, 1 kHz); any MNE
standard montage (or a subset) and rate can be chosen (``montage``, ``sfreq``), so a lab
can rehearse its own cap without hardware. Its pylsl outlet describes every channel like
an amplifier does (``desc/channels/channel``: label, type, unit, position).

It publishes background EEG (:class:`bci_app.simulation.BackgroundNoise`) in real time,
listens to an LSL marker stream (the presenter's ``"stim/<stim_id>"`` markers) and adds
the evoked response of each stimulus (:class:`bci_app.simulation.SubjectModel`) from
the sample matching the marker's timestamp. The demo, the tests and the benchmarks use
it in place of a person wearing a cap.

Timing: sample ``k`` carries the timestamp ``t0 + k / sfreq`` on the LSL clock
(``local_clock()``), chunks are pushed ``latency`` seconds (default 0.1 s) after their
last sample is due, like an amplifier's transport delay, so the stream has no jitter and
markers that reach the subject a little after the stimulus (LSL delivery takes some ms)
can still place the response exactly. A marker at time ``t`` starts its response at sample
``round((t - t0) * sfreq)``; a marker that arrives after that sample has been pushed is
*late*: its response starts at the next sample to be pushed, and it is counted and
logged.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque

import numpy as np

from bci_app.simulation import (
    BackgroundNoise,
    ComponentsBackground,
    ComponentsModel,
    SubjectModel,
    resolve_model_name,
    resolve_montage,
)
from bci_app.simulation.montage import make_montage
from bci_app.simulation.raw import shifted, trial_variability
from bci_app.stimuli import DemoStimulusSet, MarkerMapper

logger = logging.getLogger(__name__)

#: stream units -> (factor from volts, the unit text amplifiers write)
STREAM_UNITS = {"V": (1.0, "volts"), "mV": (1e3, "millivolts"), "uV": (1e6, "microvolts")}
_LOC_NAMES = ("R0x", "R0y", "R0z", "Exx", "Exy", "Exz", "Eyx", "Eyy", "Eyz", "Ezx", "Ezy", "Ezz")


def lsl_stream_info(info, name: str, source_id: str, unit: str = "volts"):
    """A ``pylsl.StreamInfo`` (type ``EEG``, float32) describing the channels of ``info``.

    ``desc/channels/channel`` holds each channel's ``label``, ``type``, ``unit`` and, in
    the layout mne-lsl reads back into an ``mne.Info``, its FIFF codes and position
    (``loc``); ``desc/dig`` holds the digitisation points.
    """
    import pylsl

    sinfo = pylsl.StreamInfo(name, "EEG", len(info["ch_names"]), float(info["sfreq"]),
                             pylsl.cf_float32, source_id)
    desc = sinfo.desc()
    desc.append_child_value("manufacturer", "bci-app virtual subject")
    channels = desc.append_child("channels")
    for ch, kind in zip(info["chs"], info.get_channel_types(), strict=True):
        c = channels.append_child("channel")
        c.append_child_value("label", ch["ch_name"])
        c.append_child_value("type", kind)  # MNE spelling, as mne-lsl writes it
        c.append_child_value("unit", unit)
        for key in ("kind", "coil_type", "coord_frame"):
            c.append_child_value(key, str(int(ch[key])))
        c.append_child_value("range_cal", str(ch["range"] * ch["cal"]))
        loc = c.append_child("loc")
        for key, value in zip(_LOC_NAMES, ch["loc"], strict=True):
            loc.append_child_value(key, repr(float(value)))
    dig = desc.append_child("dig")
    for point in info["dig"] or []:
        node = dig.append_child("point")
        node.append_child_value("kind", str(int(point["kind"])))
        node.append_child_value("ident", str(int(point["ident"])))
        loc = node.append_child("loc")
        for key, value in zip("XYZ", point["r"], strict=True):
            loc.append_child_value(key, repr(float(value)))
    return sinfo


class VirtualSubject:
    """A simulated EEG amplifier on LSL (default 128 ch ``biosemi128``, 1 kHz, float32, volts).

    Parameters
    ----------
    stimuli : DemoStimulusSet | None
        The stimuli the subject can see (default ``DemoStimulusSet()``).
    snr : float
        Multiplies the evoked responses (1.0: calibrated default).
    seed : int
        Seed of the session: background noise and trial-to-trial variability.
    name : str
        LSL stream name of the EEG outlet.
    source_id : str | None
        LSL source id (default: a fresh unique id).
    markers_name : str | None
        Name of the marker stream to listen to; ``None``: the first stream of type
        ``markers_type``.
    chunk_size : int
        Samples per pushed chunk (20 at 1 kHz: a chunk every 20 ms).
    subject_seed : int
        Identity of the subject (same default as :func:`bci_app.simulation.simulate_raw`).
    sfreq : float
        Sampling rate (Hz).
    markers_type : str
        LSL type of the marker stream when ``markers_name`` is None.
    marker_pattern : str | None
        Regular expression mapping marker strings to stimulus ids (default
        :data:`~bci_app.stimuli.markers.DEFAULT_PATTERN`).
    line_freq : float | None
        Mains frequency of the simulated line noise.
    noise_scale : float
        Multiplies the background (0 gives the pure evoked responses).
    latency : float
        Seconds between a sample's time stamp and its push (transport delay); markers
        arriving within it place their responses on the exact sample.
    montage : str | None
        The cap: an MNE standard montage (``"biosemi64"``) or a subset of one
        (``"standard_1020:Fz,Cz,Pz,O1,Oz,O2"``); None is ``biosemi128``.
    units : {"V", "mV", "uV"}
        Unit of the streamed samples, declared in the channel metadata (many amplifiers
        stream microvolts).
    model : {"attributes", "components"}
        Generative structure, as :func:`bci_app.simulation.simulate_raw`'s ``model``:
        ``"attributes"`` (alias ``"subject"``; default, the demo's subject) or
        ``"components"`` (:class:`bci_app.simulation.ComponentsModel` over
        :class:`bci_app.simulation.ComponentsBackground`).

    The subject changes no process-wide state; the live commands limit BLAS threads
    while a session runs (:mod:`bci_app.session.realtime`): without that, its small
    matrix products every 20 ms keep an OpenBLAS pool spinning.
    """

    def __init__(
        self,
        stimuli: DemoStimulusSet | None = None,
        snr: float = 1.0,
        seed: int = 0,
        name: str = "bci-app-virtual-subject",
        source_id: str | None = None,
        markers_name: str | None = None,
        chunk_size: int = 20,
        *,
        subject_seed: int = 0,
        sfreq: float = 1000.0,
        markers_type: str = "Markers",
        marker_pattern: str | None = None,
        line_freq: float | None = 50.0,
        noise_scale: float = 1.0,
        latency: float = 0.1,
        montage: str | None = None,
        units: str = "V",
        model: str = "attributes",
    ) -> None:
        if not 0.0 <= latency <= 2.0:
            raise ValueError(f"latency must be in 0..2 s, got {latency}")
        self.latency = float(latency)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 sample, got {chunk_size}")
        if units not in STREAM_UNITS:
            raise ValueError(f"units must be one of {sorted(STREAM_UNITS)}, got {units!r}")
        if sfreq <= 0:
            raise ValueError(f"sfreq must be > 0 Hz, got {sfreq}")
        self.units = units
        self.montage, self.ch_names = resolve_montage(montage)
        self.stimuli = stimuli if stimuli is not None else DemoStimulusSet()
        self.model_name = resolve_model_name(model)
        model_cls = ComponentsModel if self.model_name == "components" else SubjectModel
        self.model = model_cls(self.stimuli, snr=snr, seed=subject_seed, sfreq=sfreq,
                               ch_names=self.ch_names, montage=self.montage)
        self.sfreq = float(sfreq)
        self.seed = int(seed)
        self.name = name
        self.source_id = source_id or f"bci-app-vs-{uuid.uuid4().hex[:12]}"
        self.markers_name = markers_name
        self.markers_type = markers_type
        self.chunk_size = int(chunk_size)
        self.mapper = MarkerMapper(marker_pattern) if marker_pattern else MarkerMapper()
        if self.model_name == "components":
            self._noise = ComponentsBackground(self.ch_names, self.sfreq, seed=seed,
                                               line_freq=line_freq, scale=noise_scale,
                                               montage=self.montage)
        else:
            self._noise = BackgroundNoise(
                len(self.ch_names),
                self.sfreq,
                seed=seed,
                line_freq=line_freq,
                ch_names=self.ch_names,
                scale=noise_scale,
                montage=self.montage,
            )
        self._rng = np.random.default_rng([self.seed, 0x7A1])
        self._markers: deque[tuple[str, float]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.markers_connected = threading.Event()
        self._threads: list[threading.Thread] = []
        self._outlet = None
        self._pending = np.zeros((len(self.ch_names), 0))  # evoked to add, from sample k_sent on
        self._faults: deque[tuple[str, float]] = deque()
        self._nan_left = 0
        self.t0: float | None = None
        self.error: BaseException | None = None
        self.stats: dict[str, int] = {
            "samples_pushed": 0,
            "samples_skipped": 0,
            "markers": 0,
            "markers_late": 0,
            "markers_unknown": 0,
        }
        self.events: list[tuple[str, str, int]] = []  # (marker, stim_id, start sample)

    # ---------------------------------------------------------------- LSL info
    def mne_info(self):
        """The stream's ``mne.Info``: EEG channels (volts) with the montage's positions."""
        import mne

        info = mne.create_info(self.ch_names, self.sfreq, ch_types="eeg")
        info.set_montage(make_montage(self.montage), verbose="error")
        return info

    def _make_outlet(self):
        import pylsl

        # channel labels, types, units and electrode positions, like a real amplifier
        unit = STREAM_UNITS[self.units][1]
        sinfo = lsl_stream_info(self.mne_info(), self.name, self.source_id, unit)
        return pylsl.StreamOutlet(sinfo, chunk_size=self.chunk_size)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> VirtualSubject:
        """Open the EEG outlet (discoverable when this returns) and start streaming."""
        from pylsl import local_clock

        if self._threads:
            raise RuntimeError("VirtualSubject is already running; call stop() first")
        self._stop.clear()
        self._outlet = self._make_outlet()
        self.t0 = local_clock()
        self._threads = [
            threading.Thread(
                target=self._guard(self._stream_loop), name=f"vs-eeg-{self.name}", daemon=True
            ),
            threading.Thread(
                target=self._guard(self._marker_loop), name=f"vs-markers-{self.name}", daemon=True
            ),
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop streaming, join the threads and close the outlet."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                logger.error(
                    "virtual subject thread %s did not stop within %.1f s", t.name, timeout
                )
        self._threads = []
        self._outlet = None
        self.markers_connected.clear()

    def check(self) -> None:
        """Raise ``RuntimeError`` if a thread of the virtual subject failed."""
        if self.error is not None:
            raise RuntimeError(
                f"virtual subject {self.name!r} failed: {self.error!r}"
            ) from self.error

    def __enter__(self) -> VirtualSubject:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _guard(self, fn):
        def run() -> None:
            try:
                fn()
            except BaseException as err:  # noqa: BLE001 - logged, kept for check()
                self.error = err
                logger.exception("virtual subject %r stopped on an error", self.name)
                self._stop.set()

        return run

    # ---------------------------------------------------------------- faults
    def inject_nan(self, seconds: float) -> None:
        """Fill the next ``seconds`` of every channel with NaN (a saturated amplifier)."""
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        with self._lock:
            self._faults.append(("nan", float(seconds)))

    def inject_gap(self, seconds: float) -> None:
        """Stop pushing for ``seconds``; those samples are never sent (a lost connection).

        The timestamps jump over the gap, as they would after a dropped link.
        """
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        with self._lock:
            self._faults.append(("gap", float(seconds)))

    # ---------------------------------------------------------------- markers
    def _marker_loop(self) -> None:
        import pylsl

        inlet = None
        while not self._stop.is_set() and inlet is None:
            if self.markers_name is not None:
                found = pylsl.resolve_byprop("name", self.markers_name, timeout=0.5)
            else:
                found = pylsl.resolve_byprop("type", self.markers_type, timeout=0.5)
            if found:
                inlet = pylsl.StreamInlet(found[0], processing_flags=pylsl.proc_clocksync)
                inlet.open_stream(timeout=5.0)
                # the first clock-offset estimate holds back the first samples: take it now,
                # before saying we listen, or the first markers of a schedule arrive late
                inlet.time_correction(timeout=5.0)
                logger.info("virtual subject %r listens to markers %r", self.name, found[0].name())
                self.markers_connected.set()
        while not self._stop.is_set():
            data, ts = inlet.pull_chunk(timeout=0.05)
            if len(ts):
                with self._lock:
                    for row, t in zip(data, ts, strict=True):
                        self._markers.append((str(row[0]), float(t)))
        if inlet is not None:
            inlet.close_stream()

    def wait_for_markers(self, timeout: float = 10.0) -> None:
        """Block until the marker stream is connected; ``TimeoutError`` otherwise."""
        if not self.markers_connected.wait(timeout):
            what = (
                repr(self.markers_name) if self.markers_name else f"of type {self.markers_type!r}"
            )
            raise TimeoutError(f"virtual subject found no marker stream {what} within {timeout} s")

    def add_marker(self, marker: str, timestamp: float) -> None:
        """Schedule a marker directly (as if it came from the marker stream)."""
        with self._lock:
            self._markers.append((marker, float(timestamp)))

    def _schedule_markers(self, k_sent: int) -> None:
        with self._lock:
            markers = list(self._markers)
            self._markers.clear()
        for marker, t in markers:
            self.stats["markers"] += 1
            sid = self.mapper(marker)
            if sid is None or sid not in self.stimuli:
                self.stats["markers_unknown"] += 1
                logger.warning("virtual subject ignores marker %r (no known stimulus)", marker)
                continue
            k = int(round((t - self.t0) * self.sfreq))
            if k < k_sent:
                self.stats["markers_late"] += 1
                logger.warning(
                    "marker %r arrived %.1f ms after its sample was sent; its response starts now",
                    marker,
                    1000.0 * (k_sent - k) / self.sfreq,
                )
                k = k_sent
            if self.model_name == "components":  # its own per-component jitter
                ev = self.model.trial(sid, self._rng)
            else:
                shift, gain = trial_variability(self._rng, self.sfreq)
                ev = gain * shifted(self.model.evoked(sid), shift)
            off = k - k_sent
            need = off + ev.shape[1]
            if need > self._pending.shape[1]:
                self._pending = np.concatenate(
                    [
                        self._pending,
                        np.zeros((self._pending.shape[0], need - self._pending.shape[1])),
                    ],
                    axis=1,
                )
            self._pending[:, off:need] += ev
            self.events.append((marker, sid, k))

    # ---------------------------------------------------------------- EEG
    def _take_pending(self, n: int) -> np.ndarray:
        p = self._pending
        out = np.zeros((p.shape[0], n))
        m = min(n, p.shape[1])
        out[:, :m] = p[:, :m]
        self._pending = p[:, m:]
        return out

    def _stream_loop(self) -> None:
        from pylsl import local_clock

        fs = self.sfreq
        gain = STREAM_UNITS[self.units][0]
        k_sent = 0
        max_chunk = int(fs)  # never catch up with more than 1 s at once
        while not self._stop.is_set():
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                kind, seconds = fault
                n = int(round(seconds * fs))
                if kind == "nan":
                    self._nan_left += n
                else:  # gap: wait, then skip the samples of the gap
                    logger.warning("virtual subject %r: injected gap of %.3f s", self.name, seconds)
                    if self._stop.wait(seconds):
                        break
                    self._schedule_markers(k_sent)
                    self._take_pending(n)
                    self._noise.generate(n)
                    k_sent += n
                    self.stats["samples_skipped"] += n
            # samples whose time (plus the transport delay) has come
            due = int(np.floor((local_clock() - self.t0 - self.latency) * fs)) + 1
            n = min(due - k_sent, max_chunk)
            if n < self.chunk_size:
                wait = (k_sent + self.chunk_size) / fs + self.t0 + self.latency - local_clock()
                self._stop.wait(max(wait, 0.0005))
                continue
            self._schedule_markers(k_sent)
            x = self._noise.generate(n) + self._take_pending(n)
            if self._nan_left:
                m = min(self._nan_left, n)
                x[:, :m] = np.nan
                self._nan_left -= m
            if gain != 1.0:
                x *= gain
            ts = self.t0 + (k_sent + np.arange(n)) / fs
            self._outlet.push_chunk(np.ascontiguousarray(x.T, dtype=np.float32), ts.tolist())
            k_sent += n
            self.stats["samples_pushed"] += n
