"""EEG sources on the LSL clock; the LSL one (pylsl's public API) lives here.

Every source follows the ``EEGSource`` protocol: ``connect()``, ``disconnect()``,
``read() -> (data[C, n] volts, timestamps[n] on the local LSL clock)``, ``.ch_names``,
``.sfreq``, ``.info`` (an :class:`mne.Info`) and ``.state`` (``"disconnected"``,
``"connected"``, ``"lost"``, ``"reconnecting"``). A source decides which samples were lost
(dejitter, a package counter) and says so in its stamps, which jump across a gap by as many
periods; the consumer counts them there (:mod:`bci_app.acquisition.stats`).

The app loads one liblsl: pylsl's. mne-lsl (which bundles another) is used only by tests,
as a third-party peer in its own process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from bci_app.acquisition.conform import StreamConformer
from bci_app.acquisition.dejitter import Dejitter
from bci_app.acquisition.discovery import Query, describe_info, find_streams
from bci_app.preprocessing.channels import UNIT_CHOICES

logger = logging.getLogger(__name__)

_PROC_FLAGS = ("clocksync", "dejitter", "monotonize", "threadsafe")


class EEGSource(Protocol):
    ch_names: list[str]
    sfreq: float
    state: str

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def read(self) -> tuple[np.ndarray, np.ndarray]: ...


def check_stream_shape(
    what: str, n_channels: int, sfreq: float, expected_n: int | None, expected_sfreq: float | None
) -> None:
    """ValueError naming both sides when a stream's channel count differs from the expected
    one or its rate is below the expected one (higher rates are resampled)."""
    problems = []
    if expected_n is not None and n_channels != expected_n:
        problems.append(f"{n_channels} channels but {expected_n} are expected")
    if expected_sfreq is not None and sfreq < expected_sfreq * (1 - 1e-6):
        problems.append(
            f"a sampling rate of {sfreq} Hz but {expected_sfreq} Hz is expected "
            "(a lower rate cannot be used)"
        )
    if problems:
        raise ValueError(
            f"{what} has {' and '.join(problems)} (by the model bundle / configuration); "
            "connect the right stream or use a bundle made for this montage and rate"
        )


def _proc_flags(names: Sequence[str]) -> int:
    import pylsl

    flags = 0
    for n in names:
        if n not in _PROC_FLAGS:
            raise ValueError(
                f"unknown LSL processing flag {n!r}; allowed: {', '.join(_PROC_FLAGS)}"
            )
        flags |= getattr(pylsl, f"proc_{n}")
    return flags


class _LSLInletBase:
    """Resolve, open and re-open one LSL inlet; state machine shared by EEG and markers.

    A ``name`` (or ``source_id``) finds the stream whatever its type; ``stype`` filters,
    case-insensitively, only when neither is given (:class:`~bci_app.acquisition.discovery.Query`).
    """

    _kind = "stream"

    def __init__(
        self,
        name: str | None,
        stype: str | None,
        source_id: str | None,
        *,
        timeout: float = 10.0,
        reconnect: bool = True,
        reconnect_interval: float = 0.5,
        processing_flags: tuple[str, ...] = ("clocksync",),
        lost_timeout: float | None = None,
    ) -> None:
        self.name = name
        self.lost_timeout = lost_timeout
        self.stype = stype
        self.source_id = source_id
        self.timeout = float(timeout)
        self.reconnect = reconnect
        self.reconnect_interval = float(reconnect_interval)
        self.processing_flags = tuple(processing_flags)
        self._flags = _proc_flags(self.processing_flags)
        self.state = "disconnected"
        self.n_reconnects = 0
        self._inlet = None
        self._sinfo = None
        self._next_try = 0.0
        self._last_data = 0.0
        self._got_data = False

    @property
    def stream_info(self):
        """The connected stream's full ``pylsl.StreamInfo`` (with ``desc``), or None."""
        return self._sinfo

    # subclasses check the stream and set their attributes here
    def _accept(self, sinfo) -> None:  # pragma: no cover - overridden
        pass

    def _open(self, sinfo) -> None:
        import pylsl

        inlet = pylsl.StreamInlet(
            sinfo, max_buflen=360, recover=False, processing_flags=self._flags
        )
        full = inlet.info(timeout=self.timeout)  # with desc/channels
        inlet.open_stream(timeout=self.timeout)
        inlet.time_correction(timeout=self.timeout)  # first estimate takes a few ms
        self._inlet = inlet
        self._sinfo = full
        self.source_id = full.source_id() or self.source_id
        self._last_data = time.monotonic()
        self._got_data = False

    def connect(self) -> None:
        """Find the stream, check it and subscribe to it.

        Raises :class:`~bci_app.acquisition.discovery.StreamNotFound` (a RuntimeError that
        lists the streams on the network) when none fits within ``timeout``.
        """
        found = find_streams(Query(self.name, self.stype, self.source_id), self.timeout)
        self._accept(found[0])
        self._open(found[0])
        self.state = "connected"
        logger.info("connected to %s %s", self._kind, describe_info(found[0]))

    def _drop_inlet(self) -> None:
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            try:
                inlet.close_stream()
            except Exception:  # closing a dead inlet can fail; nothing to recover
                pass
            del inlet  # pylsl destroys the inlet with its last reference

    def disconnect(self) -> None:
        self._drop_inlet()
        self.state = "disconnected"

    def _on_lost(self, err: Exception) -> None:
        logger.warning("%s %r lost (%s); will try to reconnect", self._kind, self.name, err)
        self._drop_inlet()
        self.state = "lost"
        self._next_try = 0.0

    def _try_reconnect(self) -> bool:
        if not self.reconnect or time.monotonic() < self._next_try:
            return False
        self.state = "reconnecting"
        self._next_try = time.monotonic() + self.reconnect_interval
        try:
            query = Query(self.name, self.stype, self.source_id)
            if self.source_id:
                query = Query(source_id=self.source_id)
            found = find_streams(query, min(0.3, self.timeout))
            self._accept(found[0])
            self._open(found[0])
        except Exception as err:  # not back yet, or a stream with other channels
            logger.debug("reconnect to %s %r failed: %s", self._kind, self.source_id, err)
            return False
        self.state = "connected"
        self.n_reconnects += 1
        logger.warning("%s %r reconnected (source_id %r)", self._kind, self.name, self.source_id)
        return True

    def _pull(self, max_samples: int, as_numpy: bool) -> tuple[object, np.ndarray] | None:
        """All available samples, or None when lost / not connected."""
        from pylsl.util import LostError

        if self._inlet is None:
            if self.state in ("lost", "reconnecting"):
                self._try_reconnect()
            if self._inlet is None:
                return None
        chunks, stamps = [], []
        try:
            while True:
                data, ts = self._inlet.pull_chunk(
                    timeout=0.0, max_samples=max_samples, as_numpy=as_numpy
                )
                if len(ts) == 0:
                    break
                chunks.append(data)
                stamps.append(np.asarray(ts, dtype=np.float64))
                if len(ts) < max_samples:
                    break
        except LostError as err:
            self._on_lost(err)
            return None
        now = time.monotonic()
        if not stamps:
            # liblsl does not always report a vanished outlet; silence longer than
            # lost_timeout on a regular-rate stream means it is gone (or stalled)
            # (only once data has flowed: a stream may legitimately not have started yet)
            if (
                self.lost_timeout is not None
                and self._got_data
                and now - self._last_data > self.lost_timeout
            ):
                self._on_lost(RuntimeError(f"no data for {self.lost_timeout} s"))
            return None
        self._last_data = now
        self._got_data = True
        if not as_numpy:
            return [s for c in chunks for s in c], np.concatenate(stamps)
        return np.concatenate(chunks, axis=0), np.concatenate(stamps)


class LSLSource(_LSLInletBase):
    """EEG from an LSL stream, in volts, timestamps time-corrected onto the local LSL clock.

    Parameters
    ----------
    name, stype, source_id : str | None
        What to resolve: a name (or source id) finds the stream whatever its type; the type
        filters (case-insensitively) only when neither is given. After a loss the source
        looks for a stream with the same ``source_id`` again (state ``"lost"`` then
        ``"reconnecting"``).
    ch_names : list of str, optional
        The channels the consumer needs, picked by name (case-insensitively, any order;
        other channels are dropped); a missing one is a ValueError naming it. None keeps
        every channel in the stream's order.
    sfreq : float, optional
        The rate the consumer needs: a stream at that rate is used as is, a higher one is
        resampled causally (:attr:`delay` says how much latency that adds), a lower one is
        a ValueError naming both. None keeps the stream's rate.
    units : ``"uV"``, ``"mV"``, ``"V"`` or None
        Overrides the units of the stream's channel metadata (``desc/channels/channel/unit``).
        Without either, the data is read as volts and one warning is logged if its
        amplitudes are implausible for volts.
    n_channels : int, optional
        An exact channel count to insist on (for streams picked without names).
    processing_flags : tuple
        liblsl post-processing; ``("clocksync",)`` applies time correction.
    dejitter : bool
        Re-fit the timestamps against the sample count (:class:`~bci_app.acquisition.dejitter.Dejitter`,
        on by default): bursts, arrival stamping and clock drift come out one sample period
        apart, and only samples really missing make the stamps jump (by as many periods). Off
        (``--no-dejitter``), the stamps are used as they come and every jump of 1.5
        periods or more counts as lost samples. liblsl's own ``"dejitter"`` flag (a mean
        fit, which puts bursty streams late) is not needed with it.
    lost_timeout : float
        Seconds without any sample after which the stream counts as lost (liblsl does
        not always report a vanished outlet); the source then looks for it again.
    """

    _kind = "EEG stream"

    def __init__(
        self,
        name: str | None = None,
        stype: str | None = "EEG",
        source_id: str | None = None,
        *,
        ch_names: Sequence[str] | None = None,
        sfreq: float | None = None,
        units: str | None = None,
        n_channels: int | None = None,
        timeout: float = 10.0,
        reconnect: bool = True,
        processing_flags: tuple[str, ...] = ("clocksync",),
        max_chunk: int = 4096,
        lost_timeout: float = 1.0,
        dejitter: bool = True,
    ) -> None:
        super().__init__(
            name,
            stype,
            source_id,
            timeout=timeout,
            reconnect=reconnect,
            processing_flags=processing_flags,
            lost_timeout=lost_timeout,
        )
        if units is not None and units not in UNIT_CHOICES:
            raise ValueError(f"units={units!r}; expected one of {', '.join(UNIT_CHOICES)}")
        self.expected_ch_names = list(ch_names) if ch_names is not None else None
        self.expected_n_channels = n_channels
        self.expected_sfreq = float(sfreq) if sfreq else None
        self.units = units
        self.max_chunk = int(max_chunk)
        self.ch_names: list[str] = list(ch_names) if ch_names is not None else []
        self.sfreq = float(sfreq) if sfreq else 0.0
        self.stream_ch_names: list[str] = []
        self.stream_units: list[str | None] | None = None
        self.stream_sfreq = 0.0
        self.conformer: StreamConformer | None = None
        self.dejitter = bool(dejitter)
        self.dejitterer: Dejitter | None = None
        self._info = None

    def _what(self, sinfo) -> str:
        return f"EEG stream {sinfo.name()!r}"

    def _accept(self, sinfo) -> None:
        what = self._what(sinfo)
        if sinfo.nominal_srate() <= 0:
            raise ValueError(
                f"{what} has an irregular rate; expected an EEG stream with a nominal sampling rate"
            )
        check_stream_shape(
            what,
            sinfo.channel_count(),
            sinfo.nominal_srate(),
            self.expected_n_channels,
            self.expected_sfreq,
        )
        if self.stream_sfreq and self.expected_sfreq is None:  # reconnecting, "as it is"
            if sinfo.nominal_srate() != self.stream_sfreq:
                raise ValueError(
                    f"{what} came back at {sinfo.nominal_srate()} Hz, not {self.stream_sfreq} Hz"
                )

    def _open(self, sinfo) -> None:
        super()._open(sinfo)
        try:
            self._conform(self._sinfo)
        except Exception:
            self._drop_inlet()
            raise

    def _conform(self, full) -> None:
        n = full.channel_count()
        labels = full.get_channel_labels()
        if not labels or len(labels) != n or any(not lab for lab in labels):
            labels = [f"EEG{i:03d}" for i in range(n)]
            wanted = self.expected_ch_names
            if wanted is not None and len(wanted) != n:
                raise ValueError(
                    f"{self._what(full)} has no channel labels (desc/channels/channel/label) and "
                    f"{n} channels, so the {len(wanted)} channels needed cannot be picked by "
                    "name; have the amplifier's LSL app send its channel labels"
                )
            if wanted is not None:
                # a stream without labels: its channels are taken in the bundle's order
                logger.warning(
                    "%s has no channel labels; taking its %d channels as %s... in order",
                    self._what(full), n, ", ".join(wanted[:4]),
                )  # fmt: skip
                labels = list(wanted)
        units = full.get_channel_units()
        if units is not None and len(units) != n:
            units = None
        if (
            self.expected_ch_names is None
            and self.stream_ch_names
            and labels != self.stream_ch_names
        ):
            raise ValueError(f"{self._what(full)} came back with other channels")
        previous = self.conformer
        self.conformer = StreamConformer(
            labels,
            full.nominal_srate(),
            units,
            want_ch_names=self.expected_ch_names,
            want_sfreq=self.expected_sfreq,
            units_override=self.units,
            what=self._what(full),
        )
        if previous is not None and previous.checked:  # one units warning per source
            self.conformer.checked = True
            self.conformer.warning = previous.warning
        self.stream_ch_names = list(labels)
        self.stream_units = units
        self.stream_sfreq = float(full.nominal_srate())
        if self.dejitter and (
            self.dejitterer is None or self.dejitterer.sfreq != self.stream_sfreq
        ):
            self.dejitterer = Dejitter(self.stream_sfreq)
        self.ch_names = list(self.conformer.ch_names)
        self.sfreq = self.conformer.sfreq
        self.name = self.name or full.name()
        self._info = None

    def _on_lost(self, err: Exception) -> None:
        super()._on_lost(err)
        if self.dejitterer is not None:  # what comes back is a new segment of the stream
            self.dejitterer.restart()

    @property
    def delay(self) -> float:
        """Seconds of latency added by resampling (0 when the stream's rate is used as is)."""
        return self.conformer.delay if self.conformer is not None else 0.0

    @property
    def units_warning(self) -> str | None:
        """The warning about implausible amplitudes without units, once it was given."""
        return self.conformer.warning if self.conformer is not None else None

    @property
    def info(self):
        """An :class:`mne.Info` with the output's channel names and rate (EEG channels)."""
        if self._info is None:
            import mne

            self._info = mne.create_info(self.ch_names, self.sfreq, "eeg")
        return self._info

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """All samples received since the last call: ``(data[C, n] volts, timestamps[n])``.

        With dejitter on, samples whose stamps say they may follow a gap are held back until
        later samples tell (at most about half a second; see :mod:`~bci_app.acquisition.dejitter`).
        """
        empty = np.zeros((len(self.ch_names), 0)), np.zeros(0)
        got = self._pull(self.max_chunk, as_numpy=True)
        if got is None or self.conformer is None:
            return empty
        data, ts = got
        x = np.asarray(data).T
        if self.dejitterer is not None:  # the one place that decides what was lost
            x, ts = self.dejitterer.process(x, ts)
            if ts.size == 0:
                return empty
        return self.conformer.process(x, ts)
