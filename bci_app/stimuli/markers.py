"""Marker strings <-> stimulus ids.

The app sends ``"stim/<stim_id>"`` (e.g. ``"stim/c07_i23"``). Labs using PsychoPy or
their own presenter send whatever they like; a regular expression with a named
group ``id`` (or the first group) maps their strings to stimulus ids. Markers that
do not match are *unknown*: counted and ignored, never fatal.
"""

from __future__ import annotations

import re

DEFAULT_PATTERN = r"^stim/(?P<id>.+)$"


def format_marker(stim_id: str) -> str:
    """The marker string the app's presenter and virtual subject use."""
    return f"stim/{stim_id}"


class MarkerMapper:
    """Map marker strings to stimulus ids with a configurable regular expression."""

    def __init__(self, pattern: str = DEFAULT_PATTERN) -> None:
        try:
            self._re = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"marker pattern {pattern!r} is not a valid regular expression: {err}") from None
        if self._re.groups == 0:
            raise ValueError(
                f"marker pattern {pattern!r} has no group; expected a named group 'id' "
                f"(e.g. r'{DEFAULT_PATTERN}') or one plain group around the stimulus id"
            )
        self.pattern = pattern
        self.unknown = 0

    def __call__(self, marker: str) -> str | None:
        """Stimulus id for ``marker``, or ``None`` (and counted) when it does not match."""
        m = self._re.match(marker.strip())
        if m is None:
            self.unknown += 1
            return None
        gid = m.groupdict().get("id")
        return gid if gid is not None else m.group(1)
