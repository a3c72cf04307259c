"""Markers from a trigger (stim) channel of the EEG stream (``--trigger-channel NAME``).

Amplifiers of many labs carry the presenter's trigger codes in a channel of the EEG stream
(BioSemi ``Status``, Brain Products' trigger channel, a parallel-port ``STI 014``) instead of
an LSL marker stream. :class:`TriggerMarkers` reads that one channel and turns each change
to a non-zero code into a marker ``(str(code), time stamp of that sample)``: a marker source
like :class:`~bci_app.acquisition.markers.LSLMarkerSource`, so the epocher, the recorder and
the event map (``--event-map``: code -> stimulus id) see it as they see marker strings.
This is the rule of the offline reader (:func:`mne.find_events` with ``consecutive=True``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def code_edges(values: np.ndarray, previous: int = 0) -> tuple[np.ndarray, int]:
    """Indices where ``values`` (trigger codes) change to a non-zero code, given the code of
    the sample before them; returns ``(indices, last code)``."""
    v = np.rint(np.nan_to_num(np.asarray(values, dtype=np.float64))).astype(np.int64)
    if v.size == 0:
        return np.zeros(0, dtype=np.int64), int(previous)
    before = np.concatenate([[int(previous)], v[:-1]])
    idx = np.nonzero((v != before) & (v != 0))[0]
    return idx, int(v[-1])


class TriggerMarkers:
    """A marker source reading the codes of one channel of an EEG source.

    Parameters
    ----------
    source
        An EEG source (``connect``/``read``/``disconnect``, e.g. an ``LSLSource`` with
        ``ch_names=[NAME]`` and no unit scaling) whose first channel is the trigger channel.
    channel : str
        Its name, for messages.
    """

    def __init__(self, source: Any, channel: str) -> None:
        self.source = source
        self.channel = channel
        self._last = 0
        self.n_events = 0

    @property
    def state(self) -> str:
        return getattr(self.source, "state", "connected")

    def connect(self) -> None:
        try:
            self.source.connect()
        except ValueError:  # the stream has no such channel: say which it has
            sinfo = getattr(self.source, "stream_info", None)
            labels = list(sinfo.get_channel_labels() or []) if sinfo is not None else []
            if not labels or self.channel.lower() in (str(c).lower() for c in labels):
                raise
            raise ValueError(
                f"trigger channel {self.channel!r} is not in the stream; its channels are: "
                f"{', '.join(str(c) for c in labels)} (--trigger-channel NAME)"
            ) from None

    def disconnect(self) -> None:
        self.source.disconnect()

    def pull(self) -> list[tuple[str, float]]:
        """Markers of the codes that started since the last call: ``[(code, LSL time)]``."""
        data, ts = self.source.read()
        if ts.size == 0:
            return []
        idx, self._last = code_edges(data[0], self._last)
        codes = np.rint(data[0, idx]).astype(np.int64)
        self.n_events += int(idx.size)
        return [(str(int(c)), float(ts[i])) for c, i in zip(codes, idx, strict=True)]
