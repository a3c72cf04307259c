"""Raw files of every format MNE reads, and events from a trigger (stim) channel.

``session:FILE`` reads ``.fif``, ``.vhdr`` (BrainVision), ``.bdf``/``.edf`` (BioSemi,
EDF+), ``.gdf``, ``.set`` (EEGLAB), ``.cnt`` (Neuroscan/ANT), ``.mff`` (EGI, a directory)
with :func:`mne.io.read_raw` (channel types as the reader gives them, data in volts) and
``.xdf`` with pyxdf (:mod:`bci_app.datasets.xdf`). The file's annotations are its markers
(BrainVision's ``"Stimulus/S 12"``, EEGLAB events, EDF+ annotations); they map to stimulus
ids through ``--event-map`` or ``--marker-pattern``.

A trigger channel (``--trigger-channel NAME``; without a name, the file's stim-typed
channel when the file has no marker annotations, e.g. a BioSemi ``Status`` channel) gives
one marker per rising edge, its description the integer code (``"12"``), found with
:func:`mne.find_events` and placed as annotations, so the rest of the app sees them
exactly like annotations.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.file_errors import DamagedFileError, reading

log = logging.getLogger(__name__)

# suffixes read by mne.io.read_raw (".mff" is a directory)
MNE_SUFFIXES = (".fif", ".fif.gz", ".vhdr", ".bdf", ".edf", ".gdf", ".set", ".cnt", ".mff")
FORMATS_HELP = "a session directory, .xdf, or a raw file MNE reads (" + ", ".join(MNE_SUFFIXES) + ")"

# stim channel names preferred when a file has several (MNE's defaults, BioSemi, BrainVision)
_PREFERRED_STIM = ("sti 014", "sti101", "status", "trigger", "stim", "trig")


def raw_suffix(path: str | Path) -> str:
    """The format suffix of ``path`` (``".fif.gz"`` kept whole), lower case."""
    name = Path(path).name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else Path(name).suffix


def is_mne_raw(path: str | Path) -> bool:
    return raw_suffix(path) in MNE_SUFFIXES


def read_raw_file(path: str | Path) -> Any:
    """An MNE-readable raw file, preloaded, in volts, with the reader's channel types."""
    import mne

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"session {path} does not exist; expected {FORMATS_HELP}")
    suffix = raw_suffix(path)
    with reading(path, f"a {suffix} recording that MNE reads"):
        if suffix in (".fif", ".fif.gz"):
            return mne.io.read_raw_fif(path, preload=True, verbose="error")
        raw = mne.io.read_raw(path, preload=True, verbose="error")
    if suffix in (".edf", ".bdf"):
        _check_edf_length(path, 3 if suffix == ".bdf" else 2)
    elif suffix == ".vhdr":
        _check_brainvision_length(raw)
    return raw


def _check_edf_length(path: Path, sample_bytes: int) -> None:
    """The data records an EDF/BDF header declares are all in the file (MNE reads a cut file
    silently, with the records that are there)."""
    with path.open("rb") as fh:
        head = fh.read(256)
        n_signals = int(head[252:256])
        fh.seek(256 + 216 * n_signals)  # label ... prefiltering: 216 bytes per signal
        per_record = sum(int(fh.read(8)) for _ in range(n_signals)) * sample_bytes
    header_bytes, n_records = int(head[184:192]), int(head[236:244])
    size = path.stat().st_size
    if n_records > 0 and size < header_bytes + n_records * per_record:
        raise DamagedFileError(
            path,
            f"holds {(size - header_bytes) // per_record} of the {n_records} data records its "
            f"header declares ({size} of {header_bytes + n_records * per_record} bytes); expected "
            "a complete file: it was cut short (a recorder stopped before closing it, or an "
            "incomplete copy)",
        )


def _check_brainvision_length(raw: Any) -> None:
    """A BrainVision data file holds whole samples of every channel (a cut one ends inside
    a sample, which MNE drops silently)."""
    data = Path(raw.filenames[0])
    sample_bytes = {"short": 2, "int": 4, "single": 4, "double": 8}.get(raw.orig_format)
    if sample_bytes is None:
        return
    frame = sample_bytes * raw.info["nchan"]
    size = data.stat().st_size
    if size % frame:
        raise DamagedFileError(
            data,
            f"is {size} bytes, not a whole number of samples of {raw.info['nchan']} channels x "
            f"{sample_bytes} bytes; expected the complete data file of its .vhdr header: it was "
            "cut short (an incomplete copy or recording)",
        )


def stim_channels(raw: Any) -> list[str]:
    """The stim-typed channels of ``raw``."""
    return [n for n, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t == "stim"]


def _marker_annotations(raw: Any) -> int:
    return sum(1 for d in raw.annotations.description if not str(d).startswith(("BAD", "EDGE")))


def resolve_trigger_channel(raw: Any, name: str | None) -> str | None:
    """The trigger channel to read: ``name`` (checked), else the stim channel of a file that
    has no marker annotations, else None (the annotations are the markers)."""
    if name is not None:
        by_lower = {c.lower(): c for c in raw.ch_names}
        hit = name if name in raw.ch_names else by_lower.get(name.lower())
        if hit is None:
            types = raw.get_channel_types()
            listing = ", ".join(f"{c} ({t})" for c, t in zip(raw.ch_names, types, strict=True))
            raise ValueError(
                f"trigger channel {name!r} is not in the recording; its channels are: {listing}"
            )
        return hit
    stims = stim_channels(raw)
    if not stims or _marker_annotations(raw):
        return None
    for pref in _PREFERRED_STIM:
        for s in stims:
            if s.lower() == pref:
                return s
    return stims[0]


def _annotation_seconds(raw: Any) -> np.ndarray:
    """Annotation onsets in seconds from the first sample (as the epochs code reads them)."""
    onset = np.asarray(raw.annotations.onset, dtype=np.float64)
    return onset - raw.first_time if raw.annotations.orig_time is not None else onset


def add_trigger_events(raw: Any, channel: str) -> int:
    """Append one annotation per event of ``channel`` (description: the integer code);
    returns the number of events. Each change to a non-zero value is an event (MNE's
    ``find_events`` with ``consecutive=True``), as the live epocher reads the channel."""
    import mne

    events = mne.find_events(raw, stim_channel=channel, consecutive=True, shortest_event=1,
                             initial_event=True, verbose="error")
    events = events[events[:, 2] != 0]
    if events.size == 0:
        log.warning("trigger channel %s holds no event", channel)
        return 0
    sfreq = float(raw.info["sfreq"])
    # a recording made with --trigger-channel already holds these codes as markers: keep one
    have = {(int(round(t * sfreq)), str(d)) for t, d in zip(_annotation_seconds(raw),
                                                        raw.annotations.description, strict=True)}
    rel = events[:, 0] - raw.first_samp
    fresh = np.array([(int(k), str(int(c))) not in have for k, c in zip(rel, events[:, 2], strict=True)])
    events, rel = events[fresh], rel[fresh]
    if events.size == 0:
        return 0
    onsets = rel / sfreq
    if raw.annotations.orig_time is not None:
        onsets = onsets + raw.first_time
    new = mne.Annotations(onsets, np.zeros(len(onsets)), [str(int(c)) for c in events[:, 2]],
                          orig_time=raw.annotations.orig_time)
    raw.set_annotations(raw.annotations + new)
    return int(len(events))


def events_from_trigger(raw: Any, trigger_channel: str | None) -> Any:
    """``raw`` with the events of its trigger channel (see :func:`resolve_trigger_channel`)
    as annotations; the raw is changed in place and returned."""
    ch = resolve_trigger_channel(raw, trigger_channel)
    if ch is not None:
        n = add_trigger_events(raw, ch)
        log.info("trigger channel %s: %d events", ch, n)
    return raw


__all__ = [
    "FORMATS_HELP",
    "MNE_SUFFIXES",
    "add_trigger_events",
    "events_from_trigger",
    "is_mne_raw",
    "raw_suffix",
    "read_raw_file",
    "resolve_trigger_channel",
    "stim_channels",
]
