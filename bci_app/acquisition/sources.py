"""EEG sources on the LSL clock; the LSL one (mne-lsl's ``lsl`` layer) lives here.

Every source follows the ``EEGSource`` protocol: ``connect()``, ``disconnect()``,
``read() -> (data[C, n] volts, timestamps[n] on the local LSL clock)``, ``.ch_names``,
``.sfreq``, ``.info`` (an :class:`mne.Info`), ``.state`` (``"disconnected"``,
``"connected"``, ``"lost"``, ``"reconnecting"``) and ``.samples_lost``.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import numpy as np

from bci_app.acquisition.epocher import count_lost

logger = logging.getLogger(__name__)


class EEGSource(Protocol):
    ch_names: list[str]
    sfreq: float
    state: str
    samples_lost: int

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def read(self) -> tuple[np.ndarray, np.ndarray]: ...


def check_stream_shape(
    what: str, n_channels: int, sfreq: float, expected_n: int | None, expected_sfreq: float | None
) -> None:
    """ValueError naming both sides when a stream's channels or rate differ from the spec."""
    problems = []
    if expected_n is not None and n_channels != expected_n:
        problems.append(f"{n_channels} channels but {expected_n} are expected")
    if expected_sfreq is not None and abs(sfreq - expected_sfreq) > 1e-6 * max(1.0, expected_sfreq):
        problems.append(f"a sampling rate of {sfreq} Hz but {expected_sfreq} Hz is expected")
    if problems:
        raise ValueError(
            f"{what} has {' and '.join(problems)} (by the model bundle / configuration); "
            "connect the right stream or use a bundle made for this montage and rate"
        )


def describe(name: str | None, stype: str | None, source_id: str | None) -> str:
    parts = [
        f"{k}={v!r}" for k, v in (("name", name), ("type", stype), ("source_id", source_id)) if v
    ]
    return "LSL stream " + (", ".join(parts) if parts else "(any)")


class _LSLInletBase:
    """Resolve, open and re-open one LSL inlet; state machine shared by EEG and markers."""

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
        self.state = "disconnected"
        self.n_reconnects = 0
        self._inlet = None
        self._sinfo = None
        self._next_try = 0.0
        self._last_data = 0.0
        self._got_data = False

    # subclasses check the stream and set their attributes here
    def _accept(self, sinfo) -> None:  # pragma: no cover - overridden
        pass

    def _resolve(self, timeout: float, by_source_id: bool = False):
        from mne_lsl.lsl import resolve_streams

        if by_source_id and self.source_id:
            found = resolve_streams(timeout=timeout, source_id=self.source_id, minimum=1)
        else:
            found = resolve_streams(
                timeout=timeout,
                name=self.name,
                stype=self.stype,
                source_id=self.source_id,
                minimum=1,
            )
        return found

    def _open(self, sinfo) -> None:
        from mne_lsl.lsl import StreamInlet

        inlet = StreamInlet(
            sinfo, max_buffered=360, recover=False, processing_flags=list(self.processing_flags)
        )
        inlet.open_stream(timeout=self.timeout)
        inlet.time_correction(timeout=self.timeout)  # first estimate takes a few ms
        self._inlet = inlet
        self._sinfo = inlet.get_sinfo(timeout=self.timeout)
        self.source_id = self._sinfo.source_id or self.source_id
        self._last_data = time.monotonic()
        self._got_data = False

    def connect(self) -> None:
        """Find the stream (name/type/source_id), check it and subscribe to it."""
        found = self._resolve(self.timeout)
        if not found:
            raise RuntimeError(
                f"no {describe(self.name, self.stype, self.source_id)} found within {self.timeout} s; "
                "is the amplifier/player streaming and on this network? (`bci-app doctor` lists streams)"
            )
        self._accept(found[0])
        self._open(found[0])
        self.state = "connected"
        logger.info("connected to %s %r (source_id %r)", self._kind, found[0].name, self.source_id)

    def disconnect(self) -> None:
        if self._inlet is not None:
            try:
                self._inlet.close_stream()
                self._inlet._del()
            except Exception:  # closing a dead inlet can fail; nothing to recover
                pass
        self._inlet = None
        self.state = "disconnected"

    def _on_lost(self, err: Exception) -> None:
        logger.warning("%s %r lost (%s); will try to reconnect", self._kind, self.name, err)
        try:
            self._inlet._del()
        except Exception:
            pass
        self._inlet = None
        self.state = "lost"
        self._next_try = 0.0

    def _try_reconnect(self) -> bool:
        if not self.reconnect or time.monotonic() < self._next_try:
            return False
        self.state = "reconnecting"
        self._next_try = time.monotonic() + self.reconnect_interval
        try:
            found = self._resolve(min(0.3, self.timeout), by_source_id=True)
            if not found:
                return False
            self._accept(found[0])
            self._open(found[0])
        except Exception as err:  # a stream with other channels, or gone again
            logger.warning("reconnect to %s %r failed: %s", self._kind, self.source_id, err)
            return False
        self.state = "connected"
        self.n_reconnects += 1
        logger.warning("%s %r reconnected (source_id %r)", self._kind, self.name, self.source_id)
        return True

    def _pull(self, max_samples: int) -> tuple[list | np.ndarray, np.ndarray] | None:
        """All available samples, or None when lost / not connected."""
        from mne_lsl.lsl._utils import LostError

        if self._inlet is None:
            if self.state in ("lost", "reconnecting"):
                self._try_reconnect()
            if self._inlet is None:
                return None
        chunks, stamps = [], []
        try:
            while True:
                data, ts = self._inlet.pull_chunk(timeout=0.0, max_samples=max_samples)
                if len(ts) == 0:
                    break
                chunks.append(data if isinstance(data, list) else np.array(data))
                stamps.append(np.array(ts, dtype=np.float64))
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
        if isinstance(chunks[0], list):
            return [s for c in chunks for s in c], np.concatenate(stamps)
        return np.concatenate(chunks, axis=0), np.concatenate(stamps)


class LSLSource(_LSLInletBase):
    """EEG from an LSL stream, timestamps time-corrected onto the local LSL clock.

    Parameters
    ----------
    name, stype, source_id : str | None
        What to resolve (any given ones must match). After a loss the source looks for a
        stream with the same ``source_id`` again (state ``"lost"`` then ``"reconnecting"``).
    n_channels, sfreq : optional
        What the configuration/model expects; ``connect`` fails with a ValueError naming
        both sides when the stream differs.
    scale : float
        Multiplies the samples to get volts (e.g. 1e-6 for a stream in microvolts).
    processing_flags : tuple
        liblsl post-processing; ``("clocksync",)`` applies time correction. Add
        ``"dejitter"`` for amplifiers whose timestamps jitter.
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
        n_channels: int | None = None,
        sfreq: float | None = None,
        scale: float = 1.0,
        timeout: float = 10.0,
        reconnect: bool = True,
        processing_flags: tuple[str, ...] = ("clocksync",),
        max_chunk: int = 4096,
        lost_timeout: float = 1.0,
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
        self.expected_n_channels = n_channels
        self.expected_sfreq = sfreq
        self.scale = float(scale)
        self.max_chunk = int(max_chunk)
        self.ch_names: list[str] = []
        self.sfreq = float(sfreq) if sfreq else 0.0
        self.samples_lost = 0
        self._last_ts: float | None = None
        self._info = None

    def _accept(self, sinfo) -> None:
        if sinfo.sfreq <= 0:
            raise ValueError(
                f"{describe(sinfo.name, sinfo.stype, sinfo.source_id)} has an irregular rate; "
                "expected an EEG stream with a nominal sampling rate"
            )
        n_before = len(self.ch_names)
        check_stream_shape(
            describe(sinfo.name, sinfo.stype, sinfo.source_id),
            sinfo.n_channels,
            sinfo.sfreq,
            self.expected_n_channels or (n_before or None),
            self.expected_sfreq or (self.sfreq or None),
        )

    def _open(self, sinfo) -> None:
        super()._open(sinfo)
        names = self._sinfo.get_channel_names()
        if not names or len(names) != self._sinfo.n_channels or any(n is None for n in names):
            names = [f"EEG{i:03d}" for i in range(self._sinfo.n_channels)]
        self.ch_names = list(names)
        self.sfreq = float(self._sinfo.sfreq)
        self.name = self.name or self._sinfo.name
        self._info = None

    @property
    def info(self):
        """An :class:`mne.Info` with the stream's channel names and rate (EEG channels)."""
        if self._info is None:
            import mne

            self._info = mne.create_info(self.ch_names, self.sfreq, "eeg")
        return self._info

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """All samples received since the last call: ``(data[C, n] volts, timestamps[n])``."""
        got = self._pull(self.max_chunk)
        if got is None:
            return np.zeros((len(self.ch_names), 0)), np.zeros(0)
        data, ts = got
        if self._last_ts is not None:
            dt = np.diff(np.concatenate([[self._last_ts], ts]))
            self.samples_lost += int(count_lost(dt, self.sfreq).sum())
        self._last_ts = float(ts[-1])
        x = np.asarray(data, dtype=np.float64).T
        if self.scale != 1.0:
            x = x * self.scale
        return x, ts
