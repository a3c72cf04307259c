"""Offline epoching with the live window arithmetic.

The marker at time ``t_m`` falls on sample ``k0``, the first sample with timestamp
``>= t_m - 0.5 / sfreq`` (the nearest sample). The window is
``[k0 + round(tmin * sfreq), k0 + round(tmin * sfreq) + n_times)``. The signal is
filtered causally over the whole recording (:class:`CausalFilter`) before the windows
are cut, exactly as the live epocher filters chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bci_app.preprocessing.channels import pick_indices
from bci_app.preprocessing.filters import CausalFilter
from bci_app.preprocessing.spec import PreprocessingSpec, normalise

GAP_DESCRIPTION = "BAD_gap"  # annotation the recorder writes where samples were lost
_CHUNK_S = 10.0  # seconds of signal filtered and epoched at a time
# MNE's zero-length marks of a join between two samples (concatenated raws, XDF clock
# resets); an XDF join's annotations carry the samples lost there in ``extras``
BOUNDARY_DESCRIPTIONS = ("BAD boundary", "EDGE boundary")
LOST_KEY = "samples_lost"


def is_marker(description: str) -> bool:
    """Whether an annotation is a marker (not lost data and not a join)."""
    d = str(description)
    return not d.startswith(GAP_DESCRIPTION) and d not in BOUNDARY_DESCRIPTIONS


def marker_sample(timestamps: np.ndarray, t_marker: float, sfreq: float) -> int:
    """Index of the first sample whose timestamp is ``>= t_marker - 0.5 / sfreq``.

    Returns ``len(timestamps)`` when the marker lies after every sample.
    """
    return int(np.searchsorted(timestamps, t_marker - 0.5 / sfreq, side="left"))


def time_to_sample(t: np.ndarray | float, sfreq: float) -> np.ndarray:
    """Nearest-sample index of times ``t`` (s, sample 0 at t=0), the same rule as above."""
    # first k with k / sfreq >= t - 0.5 / sfreq; the epsilon absorbs float error
    return np.ceil(np.asarray(t, dtype=np.float64) * sfreq - 0.5 - 1e-6).astype(np.int64)


def window_bounds(onset_sample: int, spec: PreprocessingSpec) -> tuple[int, int]:
    """``(start, stop)`` sample indices of the window of a marker on ``onset_sample``."""
    start = int(onset_sample) + spec.start_offset
    return start, start + spec.n_times


@dataclass
class EpochedData:
    """Windows cut around markers.

    ``X[i]`` is NaN where ``reject[i] == "incomplete_window"`` (the data does not cover
    it); use :meth:`good` for the usable trials only.
    """

    X: np.ndarray  # float32 [N, C, T]
    stim_ids: list[str]
    markers: list[str]
    onset_samples: np.ndarray  # int64 [N]
    onsets: np.ndarray  # float64 [N], s
    reject: list[str | None]
    ch_names: list[str] = field(default_factory=list)
    sfreq: float = 0.0
    n_unknown: int = 0
    # marker-to-light delay per trial (ms, NaN: edge missing) when re-timed to a photodiode
    photodiode_delays_ms: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.stim_ids)

    @property
    def ok(self) -> np.ndarray:
        return np.array([r is None for r in self.reject], dtype=bool)

    def good(self) -> EpochedData:
        """Only the trials with no reject reason."""
        keep = self.ok
        idx = np.nonzero(keep)[0]
        return EpochedData(
            X=self.X[keep],
            stim_ids=[self.stim_ids[i] for i in idx],
            markers=[self.markers[i] for i in idx],
            onset_samples=self.onset_samples[keep],
            onsets=self.onsets[keep],
            reject=[None] * len(idx),
            ch_names=list(self.ch_names),
            sfreq=self.sfreq,
            n_unknown=self.n_unknown,
            photodiode_delays_ms=(None if self.photodiode_delays_ms is None
                                  else self.photodiode_delays_ms[keep]),
        )

    def reject_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.reject:
            if r is not None:
                out[r] = out.get(r, 0) + 1
        return out


def epoch_array(
    data: np.ndarray,
    onset_samples: Sequence[int] | np.ndarray,
    markers: Sequence[str],
    spec: PreprocessingSpec,
    mapper=None,
    *,
    onsets: Sequence[float] | None = None,
    gaps: Sequence[tuple[int, int]] = (),
    filtered: bool = False,
    pre_reject: Sequence[str | None] | None = None,
    photodiode_delays_ms: Sequence[float] | None = None,
) -> EpochedData:
    """Epoch a continuous array ``data[C, n]`` (volts) at known marker samples.

    Parameters
    ----------
    data : ndarray [C, n]
        Raw continuous EEG, channels in the spec's order.
    onset_samples : ints
        Sample index of each marker (see :func:`marker_sample` / :func:`time_to_sample`).
    markers : strings
        The marker strings; with ``mapper`` (a :class:`bci_app.stimuli.MarkerMapper`)
        those that do not map are counted as unknown and skipped. Without a mapper
        every marker is its own stimulus id.
    gaps : (start, stop) sample ranges
        Lost or bad data; windows overlapping one are rejected as ``"gap"``. A zero-length
        ``(k, k)`` is a join between samples ``k - 1`` and ``k``: the windows across it.
    filtered : bool
        True if ``data`` is already filtered (skip the causal filter).
    pre_reject : strings or None, optional
        A reject reason per marker decided before epoching (e.g. ``"photodiode_missing"``).
    photodiode_delays_ms : floats, optional
        Marker-to-light delay per marker (kept for the trials that map to a stimulus).
    """
    if not hasattr(data, "shape"):  # an ndarray, or epoch_raw's reader of a raw, stays as it is
        data = np.asarray(data)
    if len(data.shape) != 2:
        raise ValueError(f"data must have shape (n_channels, n_samples), got {data.shape}")
    if spec.n_channels and data.shape[0] != spec.n_channels:
        raise ValueError(
            f"data has {data.shape[0]} channels but the spec has {spec.n_channels}; "
            "pick the spec's channels first"
        )
    onset_samples = np.asarray(onset_samples, dtype=np.int64).ravel()
    if len(markers) != onset_samples.size:
        raise ValueError(
            f"got {onset_samples.size} onset samples but {len(markers)} markers; expected one each"
        )
    if onsets is None:
        onsets = onset_samples / spec.sfreq
    onsets = np.asarray(onsets, dtype=np.float64)
    n_ch, n = data.shape
    T = spec.n_times
    # the trials first: which markers map to a stimulus, and where their windows lie
    n_unknown = 0
    ids, mks, oss, ons, pre, pdd = [], [], [], [], [], []
    delays = (np.asarray(photodiode_delays_ms, dtype=np.float64) if photodiode_delays_ms is not None
              else np.full(len(markers), np.nan))
    pre_reject = list(pre_reject) if pre_reject is not None else [None] * len(markers)
    for k0, marker, t, pre_r, dly in zip(onset_samples, markers, onsets, pre_reject, delays, strict=True):
        if mapper is not None:
            sid = mapper(marker)
            if sid is None:
                n_unknown += 1
                continue
        else:
            sid = marker
        ids.append(sid)
        mks.append(marker)
        oss.append(int(k0))
        ons.append(float(t))
        pre.append(pre_r)
        pdd.append(float(dly))
    bounds = np.array([window_bounds(k0, spec) for k0 in oss], dtype=np.int64).reshape(-1, 2)
    starts, stops = bounds[:, 0], bounds[:, 1]
    complete = (starts >= 0) & (stops <= n)
    # then the signal, _CHUNK_S seconds at a time: filtered causally (the state carries over,
    # so the output is that of one pass) and copied into the windows it covers, so that a
    # long recording is never held whole a second time; incomplete windows stay NaN
    X = np.full((len(oss), n_ch, T), np.nan, dtype=np.float64 if spec.has_norm else np.float32)
    bad_mask = np.zeros(n, dtype=bool)
    filt = None if filtered else CausalFilter(
        sfreq=spec.sfreq, n_channels=n_ch, l_freq=spec.l_freq, h_freq=spec.h_freq,
        order=spec.filter_order, notch=spec.notch,
    )
    step = max(1, int(round(_CHUNK_S * spec.sfreq)))
    for a in range(0, n, step):
        b = min(n, a + step)
        x = np.asarray(data[:, a:b], dtype=np.float64)
        bad_mask[a:b] = ~np.isfinite(x).all(axis=0)
        y = x if filt is None else filt.process(x)
        for i in np.flatnonzero(complete & (starts < b) & (stops > a)):
            lo, hi = max(starts[i], a), min(stops[i], b)
            X[i, :, lo - starts[i] : hi - starts[i]] = y[:, lo - a : hi - a]
    rej: list[str | None] = []
    for start, stop, ok, reason in zip(starts, stops, complete, pre, strict=True):
        if not ok:
            reason = "incomplete_window"
        elif reason is not None:
            pass
        elif bad_mask[start:stop].any():
            reason = "nan"
        elif any(g0 < stop and g1 > start for g0, g1 in gaps):
            reason = "gap"
        rej.append(reason)
    return EpochedData(
        X=normalise(X, spec) if spec.has_norm else X,
        stim_ids=ids,
        markers=mks,
        onset_samples=np.asarray(oss, dtype=np.int64),
        onsets=np.asarray(ons, dtype=np.float64),
        reject=rej,
        ch_names=list(spec.ch_names),
        sfreq=spec.sfreq,
        n_unknown=n_unknown,
        photodiode_delays_ms=(np.asarray(pdd, dtype=np.float64)
                              if photodiode_delays_ms is not None else None),
    )


def _annotation_times(raw) -> np.ndarray:
    """Annotation onsets in seconds from the raw's first sample."""
    ann = raw.annotations
    onset = np.asarray(ann.onset, dtype=np.float64)
    if ann.orig_time is not None:
        onset = onset - raw.first_time
    return onset


def discontinuities(raw) -> list[tuple[int, int]]:
    """``[(sample, samples_lost)]``, one per discontinuity of ``raw``, in order.

    A ``BAD_gap`` annotation (the recorder's) starts at its sample and lasts the lost
    samples; a join (``BAD boundary``/``EDGE boundary`` at one sample, counted once) falls
    between samples ``k - 1`` and ``k``, and its lost samples are its ``extras`` entry
    ``samples_lost`` (0 when unknown, e.g. raws concatenated by MNE).
    """
    ann = raw.annotations
    sfreq = float(raw.info["sfreq"])
    samples = time_to_sample(_annotation_times(raw), sfreq)
    extras = ann.extras or [{}] * len(ann)
    out: dict[int, int] = {}
    for k, d, dur, ex in zip(samples, ann.description, ann.duration, extras, strict=True):
        if str(d).startswith(GAP_DESCRIPTION):
            lost = max(1, int(round(float(dur) * sfreq)))
        elif d in BOUNDARY_DESCRIPTIONS:
            lost = int((ex or {}).get(LOST_KEY, 0))
        else:
            continue
        out[int(k)] = max(out.get(int(k), 0), lost)
    return sorted(out.items())


def lost_summary(raw) -> dict[str, float] | None:
    """``{"discontinuities", "samples_lost", "seconds_lost"}`` of ``raw``; None without any."""
    found = discontinuities(raw)
    if not found:
        return None
    lost = sum(n for _, n in found)
    return {"discontinuities": len(found), "samples_lost": int(lost),
            "seconds_lost": round(lost / float(raw.info["sfreq"]), 3)}


def photodiode_channel(raw, name: str) -> int:
    """Index of the photodiode channel ``name`` in ``raw`` (exact name, else case-insensitive);
    ``ValueError`` listing the channels when there is none."""
    names = list(raw.ch_names)
    if name in names:
        return names.index(name)
    folded = [n for n in names if n.lower() == str(name).lower()]
    if len(folded) == 1:
        return names.index(folded[0])
    raise ValueError(
        f"--photodiode {name!r}: no such channel in the recording; expected one of its "
        f"{len(names)} channels: {', '.join(names)}"
    )


class _RawReader:
    """``raw``'s channels ``picks`` as :func:`epoch_array` reads them, ``[:, a:b]`` at a
    time (``raw.get_data``): the recording is never copied whole."""

    def __init__(self, raw, picks: list) -> None:
        self.raw, self.picks = raw, picks
        self.shape = (len(picks), raw.n_times)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        return self.raw.get_data(picks=self.picks, start=cols.start, stop=cols.stop)[rows]


def epoch_raw(
    raw,
    spec: PreprocessingSpec,
    mapper=None,
    *,
    photodiode: str | None = None,
    photodiode_window: tuple[float, float] | None = None,
) -> EpochedData:
    """Epoch an MNE raw at its annotations, exactly as the live epocher would.

    The channels of ``spec.ch_names`` are picked by name (case-insensitively, the same rule
    as the live sources: :func:`~bci_app.preprocessing.channels.pick_indices`) in the spec's
    order (all channels when the spec names none); MNE gives them in volts. ``raw``'s
    sampling rate must equal ``spec.sfreq``. Annotations
    named ``BAD_gap`` mark lost samples (windows overlapping them are rejected as
    ``"gap"``), ``BAD boundary``/``EDGE boundary`` a join between two samples (windows
    across it are rejected as ``"gap"``); other annotations are markers, mapped to stimulus
    ids with ``mapper``.

    With ``photodiode`` (a channel name) each marker's onset moves to the light edge found
    after it within ``photodiode_window`` seconds (:func:`~bci_app.preprocessing.photodiode.find_edges`);
    a trial without an edge is rejected as ``"photodiode_missing"``; the delays are kept in
    ``EpochedData.photodiode_delays_ms``. The photodiode channel is never an EEG channel.
    """
    sfreq = float(raw.info["sfreq"])
    if abs(sfreq - spec.sfreq) > 1e-6:
        raise ValueError(
            f"recording sampled at {sfreq} Hz but the spec expects {spec.sfreq} Hz; "
            "resample the recording or use a spec for its rate"
        )
    if spec.ch_names:
        picks = pick_indices(list(raw.ch_names), spec.ch_names, what="the recording")
        data = _RawReader(raw, list(picks))
    else:
        names = list(raw.ch_names)
        if photodiode is not None:
            names.pop(photodiode_channel(raw, photodiode))
        data = _RawReader(raw, names)
        spec = PreprocessingSpec(**{**spec.to_dict(), "ch_names": names})
    times = _annotation_times(raw)
    desc = list(raw.annotations.description)
    samples = time_to_sample(times, sfreq)
    gaps = []
    keep = []
    for i, d in enumerate(desc):
        if d.startswith(GAP_DESCRIPTION):
            dur = float(raw.annotations.duration[i])
            gaps.append((int(samples[i]), int(samples[i]) + max(1, int(round(dur * sfreq)))))
        elif d in BOUNDARY_DESCRIPTIONS:
            gaps.append((int(samples[i]), int(samples[i])))
        else:
            keep.append(i)
    onset_samples, onsets = samples[keep], times[keep]
    pre_reject, delays = None, None
    if photodiode is not None:
        from bci_app.preprocessing.photodiode import (
            DEFAULT_WINDOW,
            MISSING_REASON,
            edge_delays_ms,
            find_edges,
        )

        ipd = photodiode_channel(raw, photodiode)
        if spec.ch_names and raw.ch_names[ipd] in spec.ch_names:
            raise ValueError(
                f"--photodiode {photodiode!r} is one of the EEG channels the model reads "
                f"({len(spec.ch_names)} channels); expected a separate light-sensor channel"
            )
        edges = find_edges(raw.get_data(picks=[ipd])[0], sfreq, onset_samples,
                           window=photodiode_window or DEFAULT_WINDOW, name=raw.ch_names[ipd])
        delays = edge_delays_ms(edges, onset_samples, sfreq)
        found = edges >= 0
        pre_reject = [None if f else MISSING_REASON for f in found]
        onsets = np.where(found, onsets + (edges - onset_samples) / sfreq, onsets)
        onset_samples = np.where(found, edges, onset_samples)
    return epoch_array(
        data,
        onset_samples,
        [desc[i] for i in keep],
        spec,
        mapper,
        onsets=onsets,
        gaps=gaps,
        pre_reject=pre_reject,
        photodiode_delays_ms=delays,
    )
