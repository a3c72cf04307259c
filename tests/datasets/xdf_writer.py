"""A small XDF 1.0 writer for tests (https://github.com/sccn/xdf/wiki/Specifications).

A file is ``b"XDF:"`` then chunks ``[NumLengthBytes][Length][Tag u16][content]`` where
Length counts the tag and the content: FileHeader (1), StreamHeader (2), Samples (3),
ClockOffset (4), StreamFooter (6).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np


def _varlen(n: int) -> bytes:
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 2**32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def _chunk(tag: int, content: bytes) -> bytes:
    return _varlen(len(content) + 2) + struct.pack("<H", tag) + content


@dataclass
class XDFStream:
    """One stream: numeric samples ``[n, C]`` (or strings ``[n]``) with their time stamps.

    ``clock_offsets`` are ``(collection time, offset)`` pairs: the recorder's estimate of
    (its clock - the stream's clock); readers add the offset to the stream's time stamps.
    """

    name: str
    stype: str
    sfreq: float
    samples: np.ndarray | list[str]
    timestamps: np.ndarray
    channels: list[dict[str, str]] = field(default_factory=list)
    source_id: str = ""
    clock_offsets: list[tuple[float, float]] = field(default_factory=list)

    @property
    def is_string(self) -> bool:
        return not isinstance(self.samples, np.ndarray)

    @property
    def n_channels(self) -> int:
        return 1 if self.is_string else int(self.samples.shape[1])

    def header_xml(self) -> str:
        chans = "".join(
            "<channel>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in c.items()) + "</channel>"
            for c in self.channels
        )
        fmt = "string" if self.is_string else "float32"
        return (
            '<?xml version="1.0"?><info>'
            f"<name>{escape(self.name)}</name><type>{escape(self.stype)}</type>"
            f"<channel_count>{self.n_channels}</channel_count>"
            f"<nominal_srate>{self.sfreq!r}</nominal_srate><channel_format>{fmt}</channel_format>"
            f"<source_id>{escape(self.source_id or self.name)}</source_id><version>1.1</version>"
            f"<created_at>0</created_at><uid>{escape(self.name)}-uid</uid>"
            f"<desc>{'<channels>' + chans + '</channels>' if chans else ''}</desc></info>"
        )

    def sample_bytes(self, i: int) -> bytes:
        out = struct.pack("<Bd", 8, float(self.timestamps[i]))
        if self.is_string:
            b = str(self.samples[i]).encode("utf-8")
            return out + _varlen(len(b)) + b
        return out + np.asarray(self.samples[i], dtype="<f4").tobytes()


def write_xdf(path: str | Path, streams: list[XDFStream], chunk: int = 100) -> Path:
    """Write ``streams`` to ``path``: headers, interleaved sample chunks, offsets, footers."""
    path = Path(path)
    out = [b"XDF:", _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')]
    for sid, s in enumerate(streams, start=1):
        out.append(_chunk(2, struct.pack("<I", sid) + s.header_xml().encode("utf-8")))
    n_max = max(len(s.timestamps) for s in streams)
    for a in range(0, n_max, chunk):
        for sid, s in enumerate(streams, start=1):
            idx = range(a, min(a + chunk, len(s.timestamps)))
            if len(idx):
                body = b"".join(s.sample_bytes(i) for i in idx)
                out.append(_chunk(3, struct.pack("<I", sid) + _varlen(len(idx)) + body))
    for sid, s in enumerate(streams, start=1):
        for t, off in s.clock_offsets:
            out.append(_chunk(4, struct.pack("<Idd", sid, t, off)))
    for sid, s in enumerate(streams, start=1):
        ts = s.timestamps
        offs = "".join(f"<offset><time>{t!r}</time><value>{v!r}</value></offset>"
                       for t, v in s.clock_offsets)
        xml = (
            '<?xml version="1.0"?><info>'
            f"<first_timestamp>{float(ts[0]) if len(ts) else 0.0!r}</first_timestamp>"
            f"<last_timestamp>{float(ts[-1]) if len(ts) else 0.0!r}</last_timestamp>"
            f"<sample_count>{len(ts)}</sample_count><clock_offsets>{offs}</clock_offsets></info>"
        )
        out.append(_chunk(6, struct.pack("<I", sid) + xml.encode("utf-8")))
    path.write_bytes(b"".join(out))
    return path
