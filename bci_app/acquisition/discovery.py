"""Finding LSL streams (pylsl): a name finds a stream whatever its type.

The rule (what a lab expects after naming a stream): when a name or a source id is
given, the stream's type does not matter (mne-lsl's ``PlayerLSL`` calls its type ``eeg``,
amplifier apps use ``EEG``, ``ExG`` or ``Data``); the type filters only when neither is
given, case-insensitively. When nothing matches, :class:`StreamNotFound` lists what is on
the network.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

_MAX_LISTED = 20


@dataclass(frozen=True)
class Query:
    """What to look for: ``name`` and ``source_id`` exactly, ``stype`` case-insensitively
    and only when neither of the others is given."""

    name: str | None = None
    stype: str | None = None
    source_id: str | None = None

    def matches(self, info) -> bool:
        """True when a pylsl ``StreamInfo`` fits the query."""
        if self.name is not None and info.name() != self.name:
            return False
        if self.source_id is not None and info.source_id() != self.source_id:
            return False
        if self.name is None and self.source_id is None and self.stype is not None:
            return info.type().lower() == self.stype.lower()
        return True

    def __str__(self) -> str:
        parts = [f"name={self.name!r}"] if self.name is not None else []
        if self.source_id is not None:
            parts.append(f"source_id={self.source_id!r}")
        if not parts and self.stype is not None:
            parts.append(f"type={self.stype!r} (any case)")
        return "LSL stream " + (", ".join(parts) if parts else "(any)")


def describe_info(info) -> str:
    """One line about a stream: name, type, channels, rate, source id, host."""
    rate = info.nominal_srate()
    rate_s = f"{rate:g} Hz" if rate > 0 else "irregular rate"
    return (
        f"{info.name()!r} (type {info.type()!r}, {info.channel_count()} channels, {rate_s}, "
        f"source_id {info.source_id()!r}, host {info.hostname()!r})"
    )


class StreamNotFound(RuntimeError):
    """No stream fits the query; the message lists what is on the network."""

    def __init__(self, query: Query, timeout: float, seen: list) -> None:
        self.query = query
        self.seen = list(seen)
        if seen:
            lines = [describe_info(i) for i in seen[:_MAX_LISTED]]
            if len(seen) > _MAX_LISTED:
                lines.append(f"... and {len(seen) - _MAX_LISTED} more")
            listing = f"streams on the network ({len(seen)}):\n  " + "\n  ".join(lines)
            hint = "pass one of these names (e.g. --source lsl:NAME, --markers NAME)"
        else:
            listing = "no LSL stream at all is on the network"
            hint = "is the amplifier/player streaming and on this network? (`bci-app doctor`)"
        super().__init__(f"no {query} found within {timeout:g} s; {listing}\n{hint}")


def find_streams(query: Query, timeout: float, *, step: float = 0.25) -> list:
    """Streams that fit ``query``, as soon as one is seen (within ``timeout`` s).

    Raises :class:`StreamNotFound` (listing every stream seen) when none fits.
    """
    import pylsl

    deadline = time.monotonic() + timeout
    seen: dict[str, object] = {}
    while True:
        left = deadline - time.monotonic()
        infos = pylsl.resolve_streams(wait_time=max(0.05, min(step, left)))
        hits = [i for i in infos if query.matches(i)]
        if hits:
            return hits
        for i in infos:
            seen[i.uid()] = i
        if time.monotonic() >= deadline:
            raise StreamNotFound(query, timeout, sorted(seen.values(), key=lambda i: i.name()))


def list_streams(wait_time: float = 1.0) -> list[str]:
    """One line per stream on the network (for ``bci-app doctor`` and error messages)."""
    import pylsl

    return [describe_info(i) for i in pylsl.resolve_streams(wait_time=wait_time)]
