"""Record raw EEG + markers to FIF, crash-safe to within one chunk (<= 1 s by default).

Session directory layout::

    SESSION/
      session.json              channel names, types (MNE names) and units (the stream's
                                strings, or null), sfreq, start time (LSL clock), chunk
                                length, "finalized": true once session_raw.fif is complete,
                                and the recording's notes (``record --photodiode``: the
                                light-sensor channel, "photodiode")
      markers.tsv               one line per marker, appended and flushed as it is placed:
                                sample<TAB>lsl_time<TAB>marker   (sample = running sample
                                index of the marker's nearest sample, as in the epocher)
      gaps.tsv                  sample<TAB>n_lost, one line per timestamp gap
      chunks/chunk_000000_raw.fif, chunk_000001_raw.fif, ...
                                consecutive pieces of the raw EEG (volts), each at most
                                ``chunk_seconds`` long, written atomically (temporary
                                name, then rename), with the markers known by then as
                                annotations; the LSL timestamps of their samples in
                                chunk_000000_ts.npy, ...
      session_raw.fif           written by ``close()``: all chunks concatenated, every
                                marker as an annotation (description = marker string),
                                each place where samples were lost as a join between two
                                samples, the way MNE marks the joins of concatenated raws:
                                zero-length ``BAD boundary`` + ``EDGE boundary`` with the
                                lost sample count in their ``extras`` (``samples_lost``).
                                No sample is made up and no valid one is marked bad; the
                                epocher rejects the windows across a join as ``gap``.
                                The chunks are then removed.

Every FIF holds the channel types of the stream's metadata (``ch_types``: EEG, EOG, ECG,
MISC, STIM...; :meth:`Recorder.for_source` reads them from the source), the data in volts,
and no unit for a channel whose unit is not a voltage (a counter, a trigger).

A process killed with SIGKILL leaves the chunks and markers.tsv; :func:`read_session`
rebuilds the same raw from them (losing only the samples not yet in a chunk, at most
``chunk_seconds``), and :func:`finalize_session` writes session_raw.fif from them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from bci_app.acquisition.stats import GapReader
from bci_app.file_errors import reading
from bci_app.preprocessing.epochs import BOUNDARY_DESCRIPTIONS, LOST_KEY

logger = logging.getLogger(__name__)

SESSION_FIF = "session_raw.fif"
_MNE_NAMES = {"eeg", "eog", "ecg", "emg", "misc", "stim", "resp", "bio", "temp", "seeg", "ecog"}


# LSL/XDF channel types (desc/channels/channel/type, any case) -> MNE channel types
_LSL_TYPES = {
    "eeg": "eeg", "eog": "eog", "ecg": "ecg", "ekg": "ecg", "emg": "emg", "misc": "misc",
    "aux": "misc", "acc": "misc", "accel": "misc", "gyro": "misc", "stim": "stim",
    "trigger": "stim", "trig": "stim", "markers": "stim", "resp": "resp", "bio": "bio",
    "gsr": "bio", "eda": "bio", "ppg": "bio", "temp": "temp", "seeg": "seeg", "ecog": "ecog",
}


def mne_channel_type(lsl_type: str | None) -> str:
    """The MNE channel type of an LSL channel type ("EEG", "EOG", "Trigger"...): EEG when
    none is given, ``misc`` for one MNE does not know."""
    t = (lsl_type or "").strip().lower()
    return "eeg" if not t else _LSL_TYPES.get(t, "misc")


def channel_metadata(source) -> tuple[list[str] | None, list[str | None] | None]:
    """Channel types (MNE names) and units (the stream's strings) of ``source``'s output
    channels, from its metadata: a ``ch_types`` attribute, else the connected LSL stream's
    ``desc/channels/channel/type`` and ``unit``. (None, None) when the source says nothing."""
    names = list(getattr(source, "ch_names", []) or [])
    own = getattr(source, "ch_types", None)
    if own is not None and len(own) == len(names):
        return [mne_channel_type(t) for t in own], list(getattr(source, "ch_units", None) or [None] * len(names))
    sinfo = getattr(source, "stream_info", None)
    if sinfo is None or not names:
        return None, None
    try:
        labels = list(getattr(source, "stream_ch_names", None) or sinfo.get_channel_labels() or [])
        types = sinfo.get_channel_types() or []
        units = sinfo.get_channel_units() or []
    except Exception as err:  # noqa: BLE001 - metadata is optional
        logger.debug("no channel metadata from %s: %s", source, err)
        return None, None
    n = len(labels)
    types = list(types) if len(types) == n else [None] * n
    units = list(units) if len(units) == n else [None] * n
    index = {str(lab).lower(): i for i, lab in enumerate(labels)}
    out_t, out_u = [], []
    for name in names:
        i = index.get(name.lower())
        out_t.append(mne_channel_type(types[i]) if i is not None else "eeg")
        out_u.append(units[i] if i is not None else None)
    return out_t, out_u


def _create_info(ch_names: list[str], sfreq: float, ch_types: list[str] | None,
                 units: list[str | None] | None):
    """An mne.Info with the recorded types; a channel whose unit is not a voltage (a trigger,
    a counter, "none") gets no unit, every other channel volts (the app's data are volts)."""
    import mne
    from mne.io.constants import FIFF

    from bci_app.preprocessing import volts_per_unit

    info = mne.create_info(list(ch_names), sfreq, list(ch_types) if ch_types else "eeg")
    for i, ch in enumerate(info["chs"]):
        unit = units[i] if units else None
        try:
            voltage = volts_per_unit(unit) is not None and str(unit).strip().lower() not in (
                "none", "n/a", "na", "dimensionless", "a.u.", "au", "counts", "")
        except ValueError:
            voltage = False
        if (unit is not None and str(unit).strip() and not voltage) or (
                ch_types and ch_types[i] == "stim"):
            ch["unit"] = FIFF.FIFF_UNIT_NONE
    return info


def _save_raw(data: np.ndarray, ch_names: list[str], sfreq: float, path: Path, ann=None,
              ch_types: list[str] | None = None, units: list[str | None] | None = None) -> None:
    import mne

    info = _create_info(ch_names, sfreq, ch_types, units)
    raw = mne.io.RawArray(data, info, verbose="error")
    if ann is not None and len(ann[0]):
        raw.set_annotations(mne.Annotations(ann[0], np.zeros(len(ann[0])), ann[1]))
    tmp = path.with_name("tmp_" + path.name)
    raw.save(tmp, overwrite=True, verbose="error")
    os.replace(tmp, path)


class Recorder:
    """Write every EEG chunk and marker of a session to ``directory`` (see module docs).

    Parameters
    ----------
    directory : path
        Session directory (created; must not already hold a session).
    ch_names, sfreq
        The stream's channels and rate.
    chunk_seconds : float
        Longest stretch of data not yet on disk.
    notes : dict, optional
        More entries of ``session.json`` (e.g. ``{"photodiode": "AUX1"}``).
    """

    def __init__(
        self,
        directory: str | Path,
        ch_names: list[str],
        sfreq: float,
        *,
        chunk_seconds: float = 1.0,
        ch_types: list[str] | None = None,
        units: list[str | None] | None = None,
        notes: dict | None = None,
    ) -> None:
        self.dir = Path(directory)
        if (self.dir / "session.json").exists():
            raise ValueError(
                f"{self.dir} already holds a recorded session; expected a new or empty directory"
            )
        (self.dir / "chunks").mkdir(parents=True, exist_ok=True)
        self.ch_names = list(ch_names)
        self.sfreq = float(sfreq)
        for what, vals in (("ch_types", ch_types), ("units", units)):
            if vals is not None and len(vals) != len(self.ch_names):
                raise ValueError(f"{what} has {len(vals)} entries for {len(self.ch_names)} channels; "
                                 "expected one per channel")
        self.ch_types = [mne_channel_type(t) if t not in _MNE_NAMES else t for t in ch_types] \
            if ch_types is not None else None
        self.units = list(units) if units is not None else None
        self.chunk_len = max(1, int(round(chunk_seconds * self.sfreq)))
        self._buf: list[np.ndarray] = []
        self._buf_ts: list[np.ndarray] = []
        self._n_buf = 0
        self.n_written = 0  # samples on disk
        self.n_chunks = 0
        self._ts_tail = np.zeros(0)  # timestamps of recent samples, to place markers
        self._tail_start = 0
        self._gap_reader = GapReader(self.sfreq)
        self.samples_lost = 0  # in this recording (gaps.tsv)
        self._pending: list[tuple[str, float]] = []
        self._placed: list[tuple[int, str]] = []  # markers not yet in a written chunk
        self.n_markers = 0
        self.closed = False
        self._meta = {
            "ch_names": self.ch_names,
            "ch_types": self.ch_types or ["eeg"] * len(self.ch_names),
            "units": self.units,
            "sfreq": self.sfreq,
            "chunk_seconds": chunk_seconds,
            "start_time": None,
            "finalized": False,
            **(notes or {}),
        }
        self._write_meta()
        self._markers_fh = open(self.dir / "markers.tsv", "a", encoding="utf-8")
        self._gaps_fh = open(self.dir / "gaps.tsv", "a", encoding="utf-8")

    @classmethod
    def for_source(cls, directory: str | Path, source, photodiode: str | None = None,
                   **kwargs) -> Recorder:
        """A recorder of ``source``'s channels and rate, with the channel types and units of
        its metadata (:func:`channel_metadata`).

        ``photodiode``: the source delivers a light sensor as its last channel (``--photodiode``,
        the pipeline appends it after the bundle's channels): it is written as ``misc``, never
        EEG, and named in session.json (``"photodiode"``), as ``record --photodiode`` keeps it."""
        names = list(source.ch_names)
        types, units = channel_metadata(source)
        if photodiode is not None:
            types = [*(types or ["eeg"] * len(names))[:-1], "misc"]
            kwargs["notes"] = {**(kwargs.get("notes") or {}), "photodiode": names[-1]}
        return cls(directory, names, float(source.sfreq), ch_types=types, units=units, **kwargs)

    def _write_meta(self) -> None:
        tmp = self.dir / "session.json.tmp"
        tmp.write_text(json.dumps(self._meta, indent=1))
        os.replace(tmp, self.dir / "session.json")

    @property
    def n_samples(self) -> int:
        return self.n_written + self._n_buf

    def write(self, data: np.ndarray, timestamps: np.ndarray, lost: np.ndarray | None = None) -> None:
        """Append raw ``data[C, n]`` (volts) with its LSL timestamps.

        ``lost``: the samples missing before each sample, as the acquisition thread read them
        from the stamps (:meth:`~bci_app.acquisition.stats.GapReader.read`); None: read here."""
        if self.closed:
            raise RuntimeError("the recorder is closed; start a new Recorder for a new session")
        n = timestamps.size
        if n == 0:
            return
        if data.shape[0] != len(self.ch_names):
            raise ValueError(
                f"recorder got {data.shape[0]} channels; expected {len(self.ch_names)}"
            )
        if self._meta["start_time"] is None:
            self._meta["start_time"] = float(timestamps[0])
            self._write_meta()
        if lost is None:  # the source decided; its stamps tell
            lost = self._gap_reader.read(timestamps)[0]
        for i in np.nonzero(lost)[0]:
            self._gaps_fh.write(f"{self.n_samples + int(i)}\t{int(lost[i])}\n")
        if lost.any():
            self._gaps_fh.flush()
            self.samples_lost += int(lost.sum())
        self._buf.append(np.asarray(data, dtype=np.float64))
        self._buf_ts.append(np.asarray(timestamps, dtype=np.float64))
        self._n_buf += n
        # keep a few seconds of timestamps to place markers that arrive late
        keep = int(10 * self.sfreq)
        self._ts_tail = np.concatenate([self._ts_tail, timestamps])
        if self._ts_tail.size > keep:
            cut = self._ts_tail.size - keep
            self._ts_tail = self._ts_tail[cut:]
            self._tail_start += cut
        self._place_markers()
        while self._n_buf >= self.chunk_len:
            self._flush_chunk(self.chunk_len)

    def add_markers(self, markers: list[tuple[str, float]]) -> None:
        """Markers ``[(string, LSL time)]``; placed on their nearest sample once the EEG has it."""
        self._pending.extend((str(m), float(t)) for m, t in markers)
        self._place_markers()

    def _place_markers(self, force: bool = False) -> None:
        if not self._pending or (self._ts_tail.size == 0 and not force):
            return
        half = 0.5 / self.sfreq
        still = []
        for m, t in self._pending:
            if self._ts_tail.size and self._ts_tail[-1] >= t - half:
                k = self._tail_start + int(np.searchsorted(self._ts_tail, t - half))
            elif force:  # past the end: extrapolate at the nominal rate
                last = self._ts_tail[-1] if self._ts_tail.size else t
                k = self.n_samples + int(round((t - last) * self.sfreq)) - 1
            else:
                still.append((m, t))
                continue
            self._markers_fh.write(f"{k}\t{t!r}\t{m}\n")
            self._placed.append((k, m))
            self.n_markers += 1
        self._pending = still
        self._markers_fh.flush()

    def _flush_chunk(self, n: int) -> None:
        data = np.concatenate(self._buf, axis=1)
        ts = np.concatenate(self._buf_ts)
        chunk, rest = data[:, :n], data[:, n:]
        start = self.n_written
        inside = [(k, m) for k, m in self._placed if start <= k < start + n]
        self._placed = [(k, m) for k, m in self._placed if k >= start + n]
        stem = f"chunk_{self.n_chunks:06d}"
        np.save(self.dir / "chunks" / f"{stem}_ts.npy", ts[:n])
        _save_raw(
            chunk,
            self.ch_names,
            self.sfreq,
            self.dir / "chunks" / f"{stem}_raw.fif",
            ([(k - start) / self.sfreq for k, _ in inside], [m for _, m in inside]),
            ch_types=self.ch_types,
            units=self.units,
        )
        self.n_chunks += 1
        self.n_written += n
        self._buf = [rest] if rest.shape[1] else []
        self._buf_ts = [ts[n:]] if rest.shape[1] else []
        self._n_buf = rest.shape[1]

    def close(self) -> Path | None:
        """Write what is buffered, place pending markers, write ``session_raw.fif``."""
        if self.closed:
            return None
        self._place_markers(force=True)
        if self._n_buf:
            self._flush_chunk(self._n_buf)
        self._markers_fh.close()
        self._gaps_fh.close()
        self.closed = True
        if self.n_chunks == 0:
            logger.warning("recorder %s: no data was recorded", self.dir)
            return None
        return finalize_session(self.dir)


def _read_tsv(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    rows = []
    with reading(path, "a UTF-8 tab-separated list written by the recorder"):
        text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        parts = line.split("\t", 2)
        if len(parts) >= 2 and parts[0].lstrip("-").isdigit():
            rows.append(parts)
    return rows


def _raw_from_chunks(directory: Path):
    import mne

    with reading(directory / "session.json", "the session's JSON metadata"):
        meta = json.loads((directory / "session.json").read_text())
    files = sorted((directory / "chunks").glob("chunk_*_raw.fif"))
    files = [f for f in files if not f.name.startswith("tmp_")]
    if not files:
        raise ValueError(f"{directory} holds no recorded chunk; expected chunks/chunk_*_raw.fif")
    raws = [read_fif(f, preload=True) for f in files]
    raw = mne.concatenate_raws(raws, verbose="error") if len(raws) > 1 else raws[0]
    n = raw.n_times
    sfreq = float(meta["sfreq"])
    onsets, descs, extras = [], [], []
    for k, _t, m in _read_tsv(directory / "markers.tsv"):
        k = int(k)
        if 0 <= k < n:
            onsets.append(k / sfreq)
            descs.append(m)
            extras.append({})
    for k, lost in _read_tsv(directory / "gaps.tsv"):
        k = int(k)
        if 0 < k < n:  # a join between samples k - 1 and k: nothing valid marked bad
            for d in BOUNDARY_DESCRIPTIONS:
                onsets.append(k / sfreq)
                descs.append(d)
                extras.append({LOST_KEY: int(lost)})
    order = np.argsort(onsets, kind="stable")
    raw.set_annotations(mne.Annotations(np.asarray(onsets)[order], np.zeros(len(onsets)),
                                        np.asarray(descs, dtype=object)[order],
                                        orig_time=raw.annotations.orig_time,
                                        extras=[extras[i] for i in order]))
    return raw


def read_fif(path: Path, preload: bool = True):
    """``mne.io.read_raw_fif``; a truncated or damaged file is an error naming it."""
    import mne

    with reading(path, "a .fif recording written by MNE or bci-app"):
        return mne.io.read_raw_fif(path, preload=preload, verbose="error")


def read_session(path: str | Path, preload: bool = True):
    """The recorded raw (annotations = markers) of a session directory or .fif file.

    A finished session reads ``session_raw.fif``; an unfinished one (the recording
    process was killed) is rebuilt from its chunks and ``markers.tsv``.
    """
    path = Path(path)
    if path.is_file():
        return read_fif(path, preload)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a session directory nor a .fif file")
    final = path / SESSION_FIF
    if final.exists():
        return read_fif(final, preload)
    if not (path / "session.json").exists():
        raise ValueError(
            f"{path} is not a recorded session; expected session_raw.fif or session.json + chunks/"
        )
    return _raw_from_chunks(path)


def finalize_session(directory: str | Path, remove_chunks: bool = True) -> Path:
    """Write ``session_raw.fif`` from the chunks (also for a session whose recorder was killed)."""
    directory = Path(directory)
    raw = _raw_from_chunks(directory)
    out = directory / SESSION_FIF
    tmp = directory / ("tmp_" + SESSION_FIF)
    raw.save(tmp, overwrite=True, verbose="error")
    os.replace(tmp, out)
    meta = json.loads((directory / "session.json").read_text())
    meta["finalized"] = True
    meta["n_samples"] = int(raw.n_times)
    (directory / "session.json").write_text(json.dumps(meta, indent=1))
    if remove_chunks:
        shutil.rmtree(directory / "chunks", ignore_errors=True)
    return out
