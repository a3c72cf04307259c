"""LabRecorder XDF files as an MNE raw with the markers as annotations.

pyxdf reads the file and applies the recorded clock offsets (``synchronize_clocks``) and
dejitters regular-rate time stamps. The EEG stream is chosen by name (``eeg_stream``)
or by type (``EEG``, any case); the marker stream by name (``marker_stream``) or as the
stream of type ``Markers`` (any case), else the only irregular-rate string stream.
Per-channel units come from ``desc/channels/channel/unit`` (or ``units``); the raw is
in volts. Each marker is placed on its nearest EEG sample with the live epocher's rule
(:func:`bci_app.preprocessing.marker_sample`) and lost samples (time stamp jumps) become
``BAD_gap`` annotations, exactly as the app's recorder writes a session, so the same
data gives the same epochs from XDF as from FIF.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.preprocessing import marker_sample, volts_per_unit
from bci_app.preprocessing.channels import implausible_volts, units_hint
from bci_app.preprocessing.epochs import GAP_DESCRIPTION

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


def _describe(stream: dict) -> str:
    info = stream["info"]
    return (f"{_first(info, 'name')!r} (type {_first(info, 'type')!r}, "
            f"{_first(info, 'channel_count')} ch, {_first(info, 'nominal_srate')} Hz, "
            f"{_first(info, 'channel_format')})")


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


def _pick(streams: list[dict], path: Path, what: str, name: str | None, match,
          everything: list[dict]) -> dict:
    listing = "; ".join(_describe(s) for s in everything) or "none"
    if name is not None:
        hits = [s for s in streams if _first(s["info"], "name").lower() == name.lower()]
        if not hits:
            raise ValueError(f"{path}: no stream named {name!r} for the {what}; streams: {listing}")
    else:
        hits = [s for s in streams if match(s)]
        if not hits:
            opt = "eeg" if what == "EEG" else "markers"
            raise ValueError(
                f"{path}: no {what} stream found (streams: {listing}); expected a stream of type "
                f"{'EEG' if what == 'EEG' else 'Markers'}, or name it with {opt}=NAME in the "
                "data spec"
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


def _is_markers(s: dict) -> bool:
    info = s["info"]
    kind = _first(info, "type").lower()
    if kind in ("markers", "marker"):
        return True
    return (float(_first(info, "nominal_srate", "0")) == 0
            and _first(info, "channel_format") == "string" and kind != "eeg")


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
    eeg = _pick(streams, path, "EEG", eeg_stream, _is_eeg, streams)
    mk = _pick([s for s in streams if s is not eeg], path, "marker", marker_stream, _is_markers,
               streams)
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
    # markers on their nearest EEG sample, as the recorder and the live epocher place them
    onsets, descs, durs = [], [], []
    n = ts.size
    outside = 0
    for row, t in zip(mk["time_series"], mk["time_stamps"], strict=True):
        marker = str(row[0]) if isinstance(row, list | tuple | np.ndarray) else str(row)
        k = marker_sample(ts, float(t), sfreq)
        if k >= n or (k == 0 and t < ts[0] - 0.5 / sfreq):
            outside += 1
            continue
        onsets.append(k / sfreq)
        descs.append(marker)
        durs.append(0.0)
    if outside:
        log.warning("%s: %d marker(s) outside the EEG recording were left out", path, outside)
    steps = np.diff(ts) * sfreq  # the recorder's rule: a step of >= 1.5 periods lost samples
    lost = np.where(steps >= 1.5, np.maximum(np.rint(steps).astype(np.int64) - 1, 1), 0)
    for i in np.nonzero(lost)[0]:
        onsets.append((i + 1) / sfreq)
        descs.append(GAP_DESCRIPTION)
        durs.append(float(lost[i]) / sfreq)
    minfo = mne.create_info(ch_names, sfreq, ch_types)
    minfo["description"] = f"XDF {path.name}: EEG {name!r}, markers {_first(mk['info'], 'name')!r}"
    raw = mne.io.RawArray(data, minfo, verbose="error")
    order = np.argsort(onsets, kind="stable")
    raw.set_annotations(mne.Annotations(np.asarray(onsets)[order] if onsets else [],
                                        np.asarray(durs)[order] if durs else [],
                                        [descs[i] for i in order]))
    return raw
