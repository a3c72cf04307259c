"""Live epoching: causal filtering as chunks arrive, windows cut when complete.

The window arithmetic is the offline one (:mod:`bci_app.preprocessing.epochs`): a marker
at ``t_m`` falls on the first sample with timestamp ``>= t_m - 0.5 / sfreq`` and the
window is ``[k0 + round(tmin * sfreq), ... + n_times)``. Markers may arrive before or
after their EEG; a marker whose sample is not known yet waits.

Gaps are read from the timestamps (:class:`~bci_app.acquisition.stats.GapReader`): a
source with dejitter on (the default) has already decided what was lost, and its stamps jump
by exactly that many periods; raw stamps are read as they are. Under
:class:`~bci_app.acquisition.acquisition.Acquisition` the acquisition thread reads them and
hands the breaks to :meth:`Epocher.push_data`; alone, the epocher reads them itself.

Counts (trials, rejections by reason, unknown markers, lost samples read here) go to one
:class:`~bci_app.acquisition.stats.AcquisitionStats`, which :meth:`Epocher.continue_from`
hands on to the epocher of another bundle.

Reject reasons: ``"gap"`` (samples were lost inside the window, or the marker fell in
lost data), ``"nan"`` (a non-finite raw sample in the window), ``"incomplete_window"``
(the window starts before the oldest sample still held, e.g. a marker that arrived too
late or before the stream started), ``"photodiode_missing"`` (with a photodiode channel:
no light edge in the search window after the marker).

Photodiode (``photodiode_window``, ``--photodiode CHANNEL``): the light sensor's raw samples
come with each chunk as its last row (the source picks the spec's channels, then the sensor);
a trial waits until the search window after its marker is in the buffer, then its window is
cut from the light edge
(:func:`~bci_app.preprocessing.photodiode.find_edges`, levels from the channel's buffered
history) instead of the marker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bci_app.acquisition.ring_buffer import RingBuffer
from bci_app.acquisition.stats import AcquisitionStats, GapReader
from bci_app.messages import Trial
from bci_app.preprocessing import CausalFilter, PreprocessingSpec, normalise
from bci_app.preprocessing.epochs import window_bounds

logger = logging.getLogger(__name__)


def _local_clock() -> float:
    from pylsl import local_clock

    return local_clock()


@dataclass
class _Pending:
    marker: str
    stim_id: str
    t: float
    k0: int | None = None
    start: int = 0
    stop: int = 0
    reason: str | None = None
    retimed: bool = False  # photodiode edge looked for


class Epocher:
    """Keep a filtered ring buffer and cut a :class:`Trial` for every stimulus marker.

    Parameters
    ----------
    spec : PreprocessingSpec
        Channels, rate, window, filters and normalisation.
    mapper : MarkerMapper, optional
        Marker string -> stimulus id; markers it does not map are counted in
        ``unknown_markers`` and ignored. Without one, every marker is a stimulus id.
    buffer_seconds : float
        How much history to keep (markers older than that are ``incomplete_window``).
    clock : callable
        Returns the current LSL time (``pylsl.local_clock`` by default).
    photodiode_window : (float, float), optional
        Re-time each trial to the photodiode's light edge within this many seconds after
        its marker; each chunk given to ``push_data`` then ends with the photodiode's row.

    The counts are read from :attr:`stats` (also as ``n_trials``, ``rejected``,
    ``unknown_markers`` and ``samples_lost``).
    """

    def __init__(
        self,
        spec: PreprocessingSpec,
        mapper=None,
        *,
        buffer_seconds: float = 10.0,
        clock=None,
        photodiode_window: tuple[float, float] | None = None,
    ) -> None:
        if spec.n_channels < 1:
            raise ValueError("the spec names no channels; expected the stream's channel names")
        self.spec = spec
        self.mapper = mapper
        self.sfreq = float(spec.sfreq)
        capacity = int(round(buffer_seconds * self.sfreq))
        if capacity < spec.n_times + abs(min(spec.start_offset, 0)):
            raise ValueError(
                f"buffer_seconds={buffer_seconds} holds {capacity} samples, fewer than one "
                f"window ({spec.n_times} samples); expected a longer buffer"
            )
        self.buffer = RingBuffer(spec.n_channels, capacity)
        self.filter = CausalFilter(spec)
        self._clock = clock or _local_clock
        self._pending: list[_Pending] = []
        self._gaps: list[int] = []  # absolute index i: samples were lost between i-1 and i
        self._gap_reader = GapReader(self.sfreq)  # alone; under Acquisition it is handed the breaks
        self.stats = AcquisitionStats()
        self.photodiode_window = photodiode_window
        self.photodiode_buffer = RingBuffer(1, capacity) if photodiode_window is not None else None
        self.photodiode_delays_ms: list[float] = []  # per trial looked for; NaN: missing

    # -- counts (read from stats) ----------------------------------------------------------
    @property
    def n_trials(self) -> int:
        return self.stats.trials

    @property
    def rejected(self) -> dict[str, int]:
        return self.stats.rejected

    @property
    def unknown_markers(self) -> int:
        return self.stats.unknown_markers

    @property
    def samples_lost(self) -> int:
        return self.stats.samples_lost

    def continue_from(self, old: Epocher) -> None:
        """Carry on from ``old`` (another bundle's epocher): its counts (one stats object) and
        trial numbering, and the markers still waiting for their window, which this epocher
        locates again (or rejects as ``incomplete_window`` when its buffer lacks the history)."""
        self.stats = old.stats
        if self.photodiode_buffer is not None and old.photodiode_buffer is not None:
            self.photodiode_delays_ms = old.photodiode_delays_ms
        self._pending.extend(_Pending(marker=p.marker, stim_id=p.stim_id, t=p.t) for p in old._pending)

    # -- input ---------------------------------------------------------------------------
    def push_data(
        self, data: np.ndarray, timestamps: np.ndarray, arrival: float | None = None,
        breaks: np.ndarray | None = None,
    ) -> list[Trial]:
        """Add EEG ``data[C, n]`` (volts) with LSL ``timestamps[n]``; returns the Trials now ready.

        With ``photodiode_window`` the chunk has one more row, the light sensor's raw samples.
        ``arrival`` is the local clock when the chunk was received (now by default);
        ``breaks`` where the stream breaks before each sample, as the acquisition thread read
        it from the stamps (:meth:`GapReader.read`, counted there); None: read (and counted) here.
        """
        if arrival is None:
            arrival = self._clock()
        data = np.asarray(data)
        timestamps = np.asarray(timestamps, dtype=np.float64).ravel()
        rows = self.spec.n_channels + (self.photodiode_buffer is not None)
        if data.ndim != 2 or data.shape[0] != rows:
            raise ValueError(
                f"EEG chunk has shape {data.shape}; expected ({rows}, n_samples) for the spec's "
                "channels" + (", then the photodiode" if self.photodiode_buffer is not None else "")
            )
        if data.shape[1] != timestamps.size:
            raise ValueError(
                f"EEG chunk has {data.shape[1]} samples but {timestamps.size} timestamps"
            )
        n = timestamps.size
        if n == 0:
            return self._collect()
        if breaks is None:
            lost, breaks = self._gap_reader.read(timestamps)
            self.stats.add_lost(lost)
        base = self.buffer.n_total
        self._gaps.extend(base + int(i) for i in np.nonzero(breaks)[0])
        if self.photodiode_buffer is not None:
            self.photodiode_buffer.append(np.asarray(data[-1:], dtype=np.float64), timestamps, arrival)
            data = data[:-1]
        bad = ~np.isfinite(data).all(axis=0)
        self.buffer.append(self.filter.process(data), timestamps, arrival, bad)
        first = self.buffer.first_index
        self._gaps = [g for g in self._gaps if g > first]
        return self._collect()

    def push_markers(self, markers: list[tuple[str, float]]) -> list[Trial]:
        """Add ``[(marker string, LSL time)]``; returns the Trials now ready."""
        return self.push_mapped(self.map_markers(markers))

    def map_markers(self, markers: list[tuple[str, float]]) -> list[tuple[str, str | None, float]]:
        """``[(marker, stimulus id or None, LSL time)]``: each marker mapped once (the unmapped
        counted in ``unknown_markers``), for :meth:`push_mapped` and for whoever shows them."""
        out = []
        for marker, t in markers:
            sid = self.mapper(marker) if self.mapper is not None else marker
            if sid is None:
                self.stats.unknown_markers += 1
                logger.debug("unknown marker %r ignored", marker)
            out.append((str(marker), sid, float(t)))
        return out

    def push_mapped(self, mapped: list[tuple[str, str | None, float]]) -> list[Trial]:
        """Add markers mapped by :meth:`map_markers` (unmapped ones are ignored); returns the
        Trials now ready."""
        self._pending.extend(_Pending(marker=m, stim_id=sid, t=t) for m, sid, t in mapped if sid is not None)
        return self._collect()

    # -- windows -------------------------------------------------------------------------
    def _locate(self, p: _Pending) -> bool:
        """Find the marker's sample; False if the EEG has not reached it yet."""
        ts = self.buffer.timestamps()
        if ts.size == 0:
            return False
        half = 0.5 / self.sfreq
        if ts[-1] < p.t - half:
            return False
        first = self.buffer.first_index
        rel = int(np.searchsorted(ts, p.t - half, side="left"))
        p.k0 = first + rel
        p.start, p.stop = window_bounds(p.k0, self.spec)
        if rel == 0 and ts[0] - p.t > half + 1.0 / self.sfreq:
            # the nearest sample is older than anything held (late marker, or before the stream)
            p.reason = "incomplete_window"
        elif ts[rel] - p.t > half + 1.0 / self.sfreq:
            p.reason = "gap"  # the marker's own sample was lost
        elif p.start < first:
            p.reason = "incomplete_window"
        return True

    def _collect(self) -> list[Trial]:
        out: list[Trial] = []
        still: list[_Pending] = []
        for p in self._pending:
            if p.k0 is None and not self._locate(p):
                still.append(p)
                continue
            if self.photodiode_buffer is not None and not p.retimed and p.reason is None:
                if not self._retime(p):
                    still.append(p)
                    continue
            if p.reason is None and self.buffer.n_total < p.stop:
                if p.start < self.buffer.first_index:  # evicted while waiting
                    p.reason = "incomplete_window"
                else:
                    still.append(p)
                    continue
            out.append(self._make_trial(p))
        self._pending = still
        return out

    def _retime(self, p: _Pending) -> bool:
        """Move ``p``'s window to the light edge after its marker; False until the search
        window is in the buffer."""
        from bci_app.preprocessing.photodiode import MISSING_REASON, find_edges

        w0, w1 = self.photodiode_window
        if self.photodiode_buffer.n_total < p.k0 + int(round(w1 * self.sfreq)) + 1:
            return False
        p.retimed = True
        first = self.photodiode_buffer.first_index
        hist = self.photodiode_buffer.get(first, self.photodiode_buffer.n_total)[0][0]
        try:
            edge = int(find_edges(hist, self.sfreq, [p.k0 - first], window=(w0, w1))[0])
        except ValueError as err:  # no light at all yet: the trial is missing, not a crash
            logger.warning("photodiode: %s", err)
            edge = -1
        if edge < 0:
            p.reason = MISSING_REASON
            self.photodiode_delays_ms.append(float("nan"))
            return True
        self.photodiode_delays_ms.append((first + edge - p.k0) * 1000.0 / self.sfreq)
        p.k0 = first + edge
        p.start, p.stop = window_bounds(p.k0, self.spec)
        if p.start < self.buffer.first_index:
            p.reason = "incomplete_window"
        return True

    def photodiode_summary(self) -> dict | None:
        """The marker-to-light delays so far (``report.json``'s ``"photodiode"``), or None."""
        if self.photodiode_buffer is None:
            return None
        from bci_app.preprocessing.photodiode import photodiode_summary

        return photodiode_summary(self.photodiode_delays_ms)

    def _make_trial(self, p: _Pending) -> Trial:
        C, T = self.spec.n_channels, self.spec.n_times
        reason = p.reason
        last_arrival = float("nan")
        if reason is None:
            data, _, arrival, bad = self.buffer.get(p.start, p.stop)
            last_arrival = float(arrival[-1])
            if any(p.start < g < p.stop for g in self._gaps):
                reason = "gap"
            elif bad.any():
                reason = "nan"
            x = normalise(data, self.spec)
        else:
            x = np.full((C, T), np.nan, dtype=np.float32)
        if reason is not None:
            self.stats.reject(reason)
        trial = Trial(
            data=x,
            marker=p.marker,
            stim_id=p.stim_id,
            onset=p.t,
            onset_sample=int(p.k0) if p.k0 is not None else -1,
            sfreq=self.sfreq,
            ch_names=list(self.spec.ch_names),
            index=self.n_trials,
            last_sample_time=last_arrival,
            emitted_time=self._clock(),
            reject_reason=reason,
        )
        self.stats.trials += 1
        return trial

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def seconds_to_next_window(self) -> float | None:
        """Time until the next located stimulus window is complete (None: none pending).

        Read from any thread without a lock (a snapshot: the list may change meanwhile)."""
        n = self.buffer.n_total
        todo = [p.stop - n for p in list(self._pending) if p.k0 is not None and p.reason is None]
        return max(0, min(todo)) / self.sfreq if todo else None
