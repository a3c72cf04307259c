"""Stimulus markers over LSL, time-corrected onto the local LSL clock.

Three encodings are read, whatever the stream's type:

- string streams (PsychoPy / LabRecorder style, type ``"Markers"``, and mne-lsl's
  ``PlayerLSL(..., annotations_encoding="string")``): the first channel of each sample
  is the marker;
- mne-lsl's ``PlayerLSL`` one-hot annotation stream (type ``"annotations"``, name
  ``"<player>-annotations"``, float64, one channel per annotation description, the
  annotation's duration, or -1 for 0, on the channel of the description): every
  non-zero channel of a sample is a marker named after the channel;
- single-channel numeric streams: the value, as an integer string when it is one
  (``3.0`` -> ``"3"``), or through ``numeric_table`` when given.
"""

from __future__ import annotations

import logging

import numpy as np

from bci_app.acquisition.sources import _LSLInletBase

logger = logging.getLogger(__name__)


def numeric_marker(value: float, table: dict | None = None) -> str:
    """A numeric marker value as a string, through ``table`` when it has the value."""
    if table:
        for key in (value, int(value) if float(value).is_integer() else None, str(value)):
            if key is not None and key in table:
                return str(table[key])
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class LSLMarkerSource(_LSLInletBase):
    """Markers from an LSL stream: ``pull() -> [(marker, LSL time)]``.

    Parameters
    ----------
    name, stype, source_id : str | None
        What to resolve: a name (or source id) finds the stream whatever its type
        (``PlayerLSL``'s annotation streams have type ``"annotations"``); ``stype`` filters,
        case-insensitively, only when neither is given.
    numeric_table : dict, optional
        Numeric marker value -> marker string.
    """

    _kind = "marker stream"

    def __init__(
        self,
        name: str | None = None,
        stype: str | None = "Markers",
        source_id: str | None = None,
        *,
        numeric_table: dict | None = None,
        timeout: float = 10.0,
        reconnect: bool = True,
    ) -> None:
        super().__init__(name, stype, source_id, timeout=timeout, reconnect=reconnect)
        self.numeric_table = numeric_table
        self.encoding: str | None = None
        self.channel_names: list[str] = []
        self.n_received = 0

    def _accept(self, sinfo) -> None:
        pass

    def _open(self, sinfo) -> None:
        import pylsl

        super()._open(sinfo)
        full = self._sinfo
        names = full.get_channel_labels() or []
        self.channel_names = [n or f"ch{i}" for i, n in enumerate(names)]
        if full.channel_format() == pylsl.cf_string:
            self.encoding = "string"
        elif full.channel_count() > 1 or full.type().lower() == "annotations":
            self.encoding = "one-hot"
        else:
            self.encoding = "numeric"
        logger.info("marker stream %r: %s encoding", full.name(), self.encoding)

    def pull(self) -> list[tuple[str, float]]:
        """Markers received since the last call, oldest first."""
        got = self._pull(1024, as_numpy=self.encoding != "string")
        if got is None:
            return []
        data, ts = got
        out: list[tuple[str, float]] = []
        if self.encoding == "string":
            for sample, t in zip(data, ts, strict=True):
                out.append((str(sample[0]), float(t)))
        else:
            arr = np.asarray(data, dtype=np.float64).reshape(len(ts), -1)
            if self.encoding == "one-hot":
                for row, t in zip(arr, ts, strict=True):
                    for c in np.nonzero(row)[0]:
                        name = self.channel_names[c] if c < len(self.channel_names) else str(c)
                        out.append((name, float(t)))
            else:
                for row, t in zip(arr, ts, strict=True):
                    out.append((numeric_marker(row[0], self.numeric_table), float(t)))
        self.n_received += len(out)
        return out
