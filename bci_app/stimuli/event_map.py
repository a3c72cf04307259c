"""Event maps: a lab's marker strings and trigger codes -> stimulus ids (``--event-map``).

A tab-separated file with a header line naming the columns ``marker`` and ``stimulus``
(other columns are ignored; blank lines and lines starting with ``#`` are skipped)::

    marker          stimulus
    12              c00_i00        <- an integer trigger code
    Stimulus/S 13   c00_i01        <- a marker string, matched exactly
    face_1          c01_i00

An integer in the ``marker`` column is a trigger code: it matches the code itself
(``"12"``, what a stim channel gives), BrainVision's ``"Stimulus/S 12"`` / ``"S 12"`` and
pyxdf/LSL integer markers. Any other text matches that exact (stripped) marker string.
A marker the map does not know is *unmapped*: counted (:attr:`EventMap.unknown`) and
skipped, never fatal - a lab's triggers also mark fixations, responses and block starts.

:class:`EventMap` is called like :class:`~bci_app.stimuli.MarkerMapper` (marker ->
stimulus id or None), so everything that takes a mapper takes an event map.
"""

from __future__ import annotations

import re
from collections.abc import Container
from pathlib import Path

from bci_app.file_errors import reading

# BrainVision annotations as MNE reads them ("Stimulus/S 12", "S 12", "S12"), or a bare code.
_CODE_RE = re.compile(r"^(?:(?:Stimulus/)?S\s*(?P<s>\d+)|(?P<n>[+-]?\d+)(?:\.0+)?)$")


def trigger_code(marker: str) -> int | None:
    """The integer trigger code a marker string carries, or None (not a code)."""
    m = _CODE_RE.match(str(marker).strip())
    if m is None:
        return None
    return int(m.group("s") if m.group("s") is not None else m.group("n"))


class EventMap:
    """Marker strings and trigger codes -> stimulus ids.

    Parameters
    ----------
    strings : dict
        Exact marker string -> stimulus id.
    codes : dict
        Integer trigger code -> stimulus id.
    source : str
        Where the map came from (the file), for messages.
    """

    def __init__(self, strings: dict[str, str] | None = None, codes: dict[int, str] | None = None,
                 source: str = "<event map>", fallback=None) -> None:
        self.strings = dict(strings or {})
        self.codes = dict(codes or {})
        self.source = source
        self.pattern = f"event map {source}"  # what reports print where a pattern would be
        self.unknown = 0
        # ``--marker-pattern`` given as well: markers the map does not know go through it
        self.fallback = fallback

    def with_fallback(self, mapper) -> EventMap:
        """This map, handing markers it does not know to ``mapper`` (a MarkerMapper)."""
        self.fallback = mapper
        if mapper is not None:
            self.pattern = f"event map {self.source}, then {getattr(mapper, 'pattern', mapper)!r}"
        return self

    def __len__(self) -> int:
        return len(self.strings) + len(self.codes)

    def stimulus_ids(self) -> set[str]:
        return set(self.strings.values()) | set(self.codes.values())

    def __call__(self, marker: str) -> str | None:
        """Stimulus id for ``marker`` (a string or a trigger code), or None (counted)."""
        key = str(marker).strip()
        sid = self.strings.get(key)
        if sid is None:
            code = trigger_code(key)
            if code is not None:
                sid = self.codes.get(code)
        if sid is None and self.fallback is not None:
            sid = self.fallback(key)
        if sid is None:
            self.unknown += 1
        return sid

    @classmethod
    def load(cls, path: str | Path, stimuli: Container[str] | None = None) -> EventMap:
        """Read and check an event map file (see the module docstring).

        ``stimuli``: the stimulus set when it is known (e.g. the demo set); every
        stimulus id of the file must be in it.

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            No ``marker``/``stimulus`` header, an empty cell, a marker or trigger code given
            twice, or a stimulus id outside ``stimuli``; the message names the line.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"event map {path} does not exist; expected a tab-separated file with columns "
                "'marker' and 'stimulus'"
            )
        with reading(path, "a UTF-8 tab-separated event map (columns 'marker' and 'stimulus')"):
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        header: list[str] | None = None
        strings: dict[str, str] = {}
        codes: dict[int, str] = {}
        seen: dict[object, int] = {}
        unknown: list[str] = []
        for lineno, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in line.split("\t")]
            if header is None:
                header = [c.lower() for c in cells]
                if "marker" not in header or "stimulus" not in header:
                    raise ValueError(
                        f"event map {path}, line {lineno}: header {cells} lacks the columns "
                        "'marker' and 'stimulus'; expected a tab-separated header line "
                        "'marker<TAB>stimulus'"
                    )
                im, isd = header.index("marker"), header.index("stimulus")
                continue
            if len(cells) <= max(im, isd) or not cells[im] or not cells[isd]:
                raise ValueError(
                    f"event map {path}, line {lineno}: {line!r} has no marker or no stimulus; "
                    "expected 'marker<TAB>stimulus' (tab-separated)"
                )
            marker, sid = cells[im], cells[isd]
            code = trigger_code(marker) if re.fullmatch(r"[+-]?\d+", marker) else None
            key: object = code if code is not None else marker
            if key in seen:
                what = f"trigger code {code}" if code is not None else f"marker {marker!r}"
                raise ValueError(
                    f"event map {path}, line {lineno}: {what} is already mapped on line "
                    f"{seen[key]}; expected each marker or code once"
                )
            seen[key] = lineno
            if stimuli is not None and sid not in stimuli:
                unknown.append(f"line {lineno}: {sid!r}")
            if code is not None:
                codes[code] = sid
            else:
                strings[marker] = sid
        if header is None:
            raise ValueError(f"event map {path} is empty; expected a header 'marker<TAB>stimulus' "
                             "and one line per marker or trigger code")
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise ValueError(
                f"event map {path}: stimulus id(s) not in the stimulus set: {shown}; expected ids "
                "of the stimulus set (the demo set's look like 'c07_i23'; pass --images DIR "
                "for your own images)"
            )
        return cls(strings, codes, source=str(path))


def load_event_map(path: str | Path | None, stimuli: Container[str] | None = None) -> EventMap | None:
    """:meth:`EventMap.load`, or None when no path is given."""
    return None if path is None else EventMap.load(path, stimuli)
