"""LabRecorder XDF files as an MNE raw with the markers as annotations.

pyxdf reads the file and applies the recorded clock offsets (``synchronize_clocks``, which
also undoes clock resets) and dejitters regular-rate time stamps. Streams without a sample
are skipped (a log line, and ``raw.info["description"]`` names them). The EEG stream is
chosen by name (``eeg_stream``) or by type (``EEG``, any case); the marker stream by name
(``marker_stream``), else as the stream whose type names markers (``Markers``,
``StringMarker``... any case), else the only irregular-rate string stream.
Per-channel units come from ``desc/channels/channel/unit`` (or ``units``); the raw is
in volts. Each marker is placed on its nearest EEG sample with the live epocher's rule
(:func:`bci_app.preprocessing.marker_sample`), so the same data gives the same epochs
from XDF as from FIF.

A discontinuity of the EEG (a time stamp step of 1.5 periods or more: samples lost, or a
stretch without samples such as a clock reset of the sending computer) joins the samples
on either side, as MNE joins concatenated raws: zero-length ``BAD boundary`` and ``EDGE
boundary`` annotations at the first sample after it, whose ``extras`` hold the samples
lost there (``samples_lost``; :func:`bci_app.preprocessing.epochs.lost_summary` sums
them). Windows across a join are rejected as ``"gap"``; the data on both sides stay usable.
A marker that falls inside the lost stretch has no sample and is left out (logged).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.file_errors import DamagedFileError
from bci_app.preprocessing import marker_sample, volts_per_unit
from bci_app.preprocessing.channels import implausible_volts, units_hint
from bci_app.preprocessing.epochs import BOUNDARY_DESCRIPTIONS, LOST_KEY

log = logging.getLogger(__name__)

_MNE_TYPES = {"eeg", "eog", "ecg", "emg", "misc", "stim", "resp", "bio"}


def unit_scale(unit: str | None, where: str) -> float:
    """Volts per ``unit`` (the rules of :func:`bci_app.preprocessing.volts_per_unit`);
    1.0 when no unit is given. ``where`` names the file and channel in errors."""
    try:
        scale = volts_per_unit(unit)
    except ValueError as err:
        raise ValueError(f"{where}: {err} (units=uV in the data spec)") from None
    return 1.0 if scale is None else scale


def _first(d: Any, key: str, default: str = "") -> str:
    """pyxdf keeps every XML element as a list of strings/dicts: the first text or default."""
    if not isinstance(d, dict):
        return default
    v = d.get(key)
    if isinstance(v, list) and v:
        v = v[0]
    return v if isinstance(v, str) else default


def _n_samples(stream: dict) -> int:
    return len(stream.get("time_stamps", []))


def _describe(stream: dict) -> str:
    info = stream["info"]
    empty = ", empty" if not _n_samples(stream) else ""
    return (f"{_first(info, 'name')!r} (type {_first(info, 'type')!r}, "
            f"{_first(info, 'channel_count')} ch, {_first(info, 'nominal_srate')} Hz, "
            f"{_first(info, 'channel_format')}{empty})")


def _channels(stream: dict) -> list[dict]:
    desc = stream["info"].get("desc") or [None]
    desc = desc[0] if isinstance(desc, list) else desc
    if not isinstance(desc, dict):
        return []
    chans = desc.get("channels") or [None]
    chans = chans[0] if isinstance(chans, list) else chans
    if not isinstance(chans, dict):
        return []
    out = chans.get("channel") or []
    return [c for c in out if isinstance(c, dict)]


def _pick(streams: list[dict], path: Path, what: str, name: str | None, matches,
          everything: list[dict]) -> dict:
    """The stream named ``name``, else the one stream that the first of ``matches`` (rules
    in order of preference) finds; ``streams`` holds the candidates (non-empty)."""
    listing = "; ".join(_describe(s) for s in everything) or "none"
    if name is not None:
        hits = [s for s in streams if _first(s["info"], "name").lower() == name.lower()]
        if not hits:
            empty = [s for s in everything if _first(s["info"], "name").lower() == name.lower()
                     and not _n_samples(s)]
            if empty:
                raise ValueError(f"{path}: stream {name!r} ({what}) holds no samples; expected a "
                                 f"stream with data; streams: {listing}")
            raise ValueError(f"{path}: no stream named {name!r} for the {what}; streams: {listing}")
    else:
        hits = []
        for match in matches:
            hits = [s for s in streams if match(s)]
            if hits:
                break
        if not hits:
            opt = "eeg" if what == "EEG" else "markers"
            kind = ("EEG with a nominal rate" if what == "EEG" else
                    "Markers (or another type naming markers, e.g. StringMarker), or an "
                    "irregular-rate string stream")
            raise ValueError(
                f"{path}: no {what} stream with samples found (streams: {listing}); expected a "
                f"stream of type {kind}, or name it with {opt}=NAME in the data spec"
            )
    if len(hits) > 1:
        opt = "eeg" if what == "EEG" else "markers"
        raise ValueError(
            f"{path}: {len(hits)} candidate {what} streams ({'; '.join(map(_describe, hits))}); "
            f"expected one: choose it with {opt}=NAME in the data spec"
        )
    return hits[0]


def _is_eeg(s: dict) -> bool:
    info = s["info"]
    return _first(info, "type").lower() == "eeg" and float(_first(info, "nominal_srate", "0")) > 0


def _typed_markers(s: dict) -> bool:
    """A stream whose type names markers: ``Markers``, ``StringMarker``, ``marker``..."""
    return "marker" in _first(s["info"], "type").lower()


def _string_events(s: dict) -> bool:
    """Any irregular-rate stream of strings (events whatever their type)."""
    info = s["info"]
    return (float(_first(info, "nominal_srate", "0")) == 0
            and _first(info, "channel_format") == "string"
            and _first(info, "type").lower() != "eeg")


def read_raw_xdf(
    path: str | Path,
    *,
    eeg_stream: str | None = None,
    marker_stream: str | None = None,
    units: str | None = None,
):
    """Read ``path`` (XDF) into an ``mne.io.RawArray`` in volts with marker annotations.

    Parameters
    ----------
    path : path
        The ``.xdf`` file (LabRecorder or any XDF 1.0 writer).
    eeg_stream, marker_stream : str | None
        Stream names (case-insensitive); None picks by type (see the module docstring).
    units : str | None
        Unit of every EEG channel, overriding the file's channel metadata; without
        either, samples are taken as volts.

    Returns
    -------
    raw : mne.io.RawArray
        Channels named and typed as in the stream description (``EEG``/``EOG``/... ->
        MNE types, unknown types -> ``misc``); ``raw.info["description"]`` names the
        streams used.
    """
    import mne
    import pyxdf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"XDF file {path} does not exist; expected a LabRecorder .xdf file")
    try:
        streams, _header = pyxdf.load_xdf(str(path), synchronize_clocks=True,
                                          dejitter_timestamps=True, verbose=False)
    except Exception as err:
        raise ValueError(f"{path} could not be read as XDF ({err}); expected an XDF 1.0 file") from None
    cut = [s for s in streams if not s.get("footer")]
    if cut:  # pyxdf reads what is there of a cut file and says nothing
        raise DamagedFileError(
            path, f"stream(s) {'; '.join(map(_describe, cut))} end without the footer a closed "
            "recording writes; expected a complete XDF file: it was cut short (the recorder "
            "stopped before closing it, or an incomplete copy)")
    empty = [s for s in streams if not _n_samples(s)]
    if empty:
        log.warning("%s: skipped %d empty stream(s) (no sample): %s", path, len(empty),
                    "; ".join(map(_describe, empty)))
    full = [s for s in streams if _n_samples(s)]
    eeg = _pick(full, path, "EEG", eeg_stream, [_is_eeg], streams)
    mk = _pick([s for s in full if s is not eeg], path, "marker", marker_stream,
               [_typed_markers, _string_events], streams)
    info = eeg["info"]
    name = _first(info, "name")
    sfreq = float(_first(info, "nominal_srate", "0"))
    if sfreq <= 0:
        raise ValueError(f"{path}: EEG stream {name!r} has no nominal rate; expected a regular-rate stream")
    x = np.asarray(eeg["time_series"], dtype=np.float64)
    ts = np.asarray(eeg["time_stamps"], dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{path}: EEG stream {name!r} holds no samples; expected a recording")
    n_ch = x.shape[1]
    chans = _channels(eeg)
    if len(chans) not in (0, n_ch):
        raise ValueError(f"{path}: EEG stream {name!r} describes {len(chans)} channels but has {n_ch}")
    ch_names = [_first(c, "label") or f"EEG{i:03d}" for i, c in enumerate(chans)] if chans else [
        f"EEG{i:03d}" for i in range(n_ch)]
    ch_types = []
    for c in chans or [{}] * n_ch:
        t = _first(c, "type", "eeg").lower()
        ch_types.append(t if t in _MNE_TYPES else "misc")
    declared = [_first(c, "unit") for c in chans] if chans else [""] * n_ch
    if units is not None:
        scales = np.full(n_ch, unit_scale(units, f"{path} (units=)"))
    else:
        scales = np.array([unit_scale(u, f"{path}: channel {ch_names[i]!r}")
                           for i, u in enumerate(declared)])
    data = (x * scales).T
    if units is None and not any(declared):
        eeg_rows = [i for i, t in enumerate(ch_types) if t == "eeg"] or list(range(n_ch))
        std = implausible_volts(data[eeg_rows])
        if std is not None:
            log.warning(units_hint(f"{path}: EEG stream {name!r}", std).replace("--units", "units="))
    # discontinuities, by the recorder's rule: a step of >= 1.5 periods lost samples (a step
    # back, a clock reset that the offsets did not undo, is a join with none counted)
    steps = np.diff(ts) * sfreq
    joins = np.nonzero((steps >= 1.5) | (steps < 0))[0] + 1  # first sample after each
    lost = np.where(steps >= 1.5, np.rint(steps).astype(np.int64) - 1, 0)[joins - 1]
    # markers on their nearest EEG sample, as the recorder and the live epocher place them
    onsets, descs, extras = [], [], []
    n = ts.size
    outside = in_lost = 0
    for row, t in zip(mk["time_series"], mk["time_stamps"], strict=True):
        marker = str(row[0]) if isinstance(row, list | tuple | np.ndarray) else str(row)
        k = marker_sample(ts, float(t), sfreq)
        if k >= n or (k == 0 and t < ts[0] - 0.5 / sfreq):
            outside += 1
            continue
        if k in joins and ts[k] - t > 1.5 / sfreq:  # its own sample was lost (the epocher's rule)
            in_lost += 1
            continue
        onsets.append(k / sfreq)
        descs.append(marker)
        extras.append({})
    if outside:
        log.warning("%s: %d marker(s) outside the EEG recording were left out", path, outside)
    if in_lost:
        log.warning("%s: %d marker(s) inside a stretch without EEG samples were left out",
                    path, in_lost)
    for k, n_lost in zip(joins, lost, strict=True):
        for d in BOUNDARY_DESCRIPTIONS:
            onsets.append(k / sfreq)
            descs.append(d)
            extras.append({LOST_KEY: int(n_lost)})
    note = f"XDF {path.name}: EEG {name!r}, markers {_first(mk['info'], 'name')!r}"
    if joins.size:
        summary = (f"{joins.size} discontinuit{'y' if joins.size == 1 else 'ies'} "
                   f"({int(lost.sum())} samples, {lost.sum() / sfreq:.3f} s without data)")
        note += f"; {summary} joined by 'BAD boundary' annotations"
        log.warning("%s: EEG stream %r has %s; windows across a join are rejected as 'gap'",
                    path, name, summary)
    if empty:
        note += "; empty streams skipped: " + ", ".join(repr(_first(s["info"], "name")) for s in empty)
    minfo = mne.create_info(ch_names, sfreq, ch_types)
    minfo["description"] = note
    raw = mne.io.RawArray(data, minfo, verbose="error")
    order = np.argsort(onsets, kind="stable")
    raw.set_annotations(mne.Annotations(np.asarray(onsets)[order] if onsets else [],
                                        np.zeros(len(onsets)), [descs[i] for i in order],
                                        extras=[extras[i] for i in order]))
    return raw
