"""Photodiode onsets: re-time each trial to the light edge that follows its marker.

A light sensor taped over the presenter's photodiode patch (``bci-app present
--photodiode-patch``: white in the bottom-left corner while a stimulus is shown) and wired
to an aux input records when the image really reached the screen. The marker is stamped
at the buffer swap; the compositor and monitor add a delay (often 10-50 ms, and not
always constant) after it. :func:`find_edges` finds, for each marker, the first sample
within ``window`` seconds after it where the sensor crosses half way from its dark to its
light level, and :func:`photodiode_summary` summarises the marker-to-light delays (the
``"photodiode"`` key of ``metrics.json`` and ``report.json``).

The threshold comes from the channel's own levels: half the span between its robust low
and high levels (the 5th and 95th percentiles) above the level just before each marker,
so a slow baseline drift of the sensor or amplifier does not move it. Edges are rising
(light = larger signal) or falling; ``polarity="auto"`` picks the one the trials show.

Pure numpy; used offline (:func:`bci_app.preprocessing.epochs.epoch_raw`) and live.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: search window after each marker, seconds
DEFAULT_WINDOW: tuple[float, float] = (0.0, 0.150)
#: seconds before the marker whose median is the trial's dark level
BASELINE_S = 0.010
#: robust low / high percentiles of the channel (its dark and light levels)
LEVEL_PERCENTILES: tuple[float, float] = (5.0, 95.0)
#: the light/dark span must exceed this many noise SDs to call the channel a photodiode
MIN_SPAN_SD = 8.0
MISSING_REASON = "photodiode_missing"


def _noise_sd(x: np.ndarray) -> float:
    """Noise SD from the median absolute first difference (steps and drift barely move it)."""
    d = np.diff(x)
    if d.size == 0:
        return 0.0
    return float(np.median(np.abs(d - np.median(d))) / 0.6745 / np.sqrt(2.0))


def photodiode_levels(signal: np.ndarray, name: str = "photodiode") -> tuple[float, float, float]:
    """``(low, high, noise_sd)`` of a photodiode channel; ``ValueError`` when it has no steps.

    The channel must swing between two levels by more than ``MIN_SPAN_SD`` noise SDs
    (a flat or noise-only channel never crosses a threshold set between its levels).
    """
    x = np.asarray(signal, dtype=np.float64).ravel()
    finite = x[np.isfinite(x)]
    if finite.size < 3:
        raise ValueError(
            f"photodiode channel {name!r} holds no data ({finite.size} finite samples)"
        )
    low, high = (float(v) for v in np.percentile(finite, LEVEL_PERCENTILES))
    sd = _noise_sd(finite)
    if not high - low > MIN_SPAN_SD * max(sd, 1e-30):
        raise ValueError(
            f"photodiode channel {name!r} never crosses its threshold: its levels span "
            f"{high - low:.3g} (percentiles {LEVEL_PERCENTILES[0]:g}..{LEVEL_PERCENTILES[1]:g}) "
            f"against a noise SD of {sd:.3g}; expected a light sensor that steps by more than "
            f"{MIN_SPAN_SD:g} noise SDs when the patch lights up (is the sensor over the "
            "bottom-left corner, and is the presenter run with --photodiode-patch?)"
        )
    return low, high, sd


def find_edges(
    signal: np.ndarray,
    sfreq: float,
    marker_samples: Sequence[int] | np.ndarray,
    *,
    window: tuple[float, float] = DEFAULT_WINDOW,
    polarity: str = "auto",
    name: str = "photodiode",
) -> np.ndarray:
    """The light edge after each marker: its sample index, or -1 when there is none.

    Parameters
    ----------
    signal : ndarray [n]
        The photodiode channel (any unit).
    sfreq : float
        Its sampling rate (Hz).
    marker_samples : ints
        The sample of each marker (as epoching computes it).
    window : (float, float)
        Search window in seconds after the marker; the edge is the first sample in
        ``[marker + window[0], marker + window[1]]`` beyond the threshold.
    polarity : {"auto", "rising", "falling"}
        Whether light raises or lowers the signal (``auto``: from the trials).
    name : str
        The channel's name, for error messages.

    Returns
    -------
    ndarray of int64 [n_markers]
        Edge sample per marker; -1 where the light did not cross the threshold in the
        window (or the window is outside the data).

    Raises
    ------
    ValueError
        When the channel never crosses its threshold (no steps at all, or no edge after any
        marker), or for bad arguments.
    """
    if polarity not in ("auto", "rising", "falling"):
        raise ValueError(f"polarity must be 'auto', 'rising' or 'falling', got {polarity!r}")
    if sfreq <= 0:
        raise ValueError(f"sfreq must be > 0 Hz, got {sfreq}")
    w0, w1 = float(window[0]), float(window[1])
    if not 0 <= w0 < w1:
        raise ValueError(
            f"window must be (start, stop) seconds with 0 <= start < stop, got {window}"
        )
    x = np.asarray(signal, dtype=np.float64).ravel()
    marks = np.asarray(marker_samples, dtype=np.int64).ravel()
    out = np.full(marks.size, -1, dtype=np.int64)
    if marks.size == 0:
        return out
    low, high, _sd = photodiode_levels(x, name)
    half = 0.5 * (high - low)
    n = x.size
    nb = max(1, int(round(BASELINE_S * sfreq)))
    k0, k1 = int(round(w0 * sfreq)), int(round(w1 * sfreq))
    base = np.full(marks.size, np.nan)
    segs: list[np.ndarray | None] = []
    for i, m in enumerate(marks):
        a, b = m + k0, m + k1 + 1
        if m - nb < 0 or a < 0 or b > n:
            segs.append(None)
            continue
        base[i] = np.nanmedian(x[m - nb : m]) if m > 0 else x[0]
        segs.append(x[a:b])
    if polarity == "auto":
        steps = [
            np.nanmax(s - base[i]) + np.nanmin(s - base[i])
            for i, s in enumerate(segs)
            if s is not None and np.isfinite(base[i])
        ]
        # the light side moves by ~span, the other by ~0: the sum of the extremes tells which
        sign = 1.0 if not steps or float(np.median(steps)) >= 0 else -1.0
    else:
        sign = 1.0 if polarity == "rising" else -1.0
    for i, s in enumerate(segs):
        if s is None or not np.isfinite(base[i]):
            continue
        hit = np.nonzero(sign * (s - base[i]) > half)[0]
        if hit.size:
            out[i] = int(marks[i] + k0 + hit[0])
    if not (out >= 0).any():
        raise ValueError(
            f"photodiode channel {name!r} never crosses its threshold within "
            f"{1000 * w0:.0f}-{1000 * w1:.0f} ms after any of the {marks.size} markers "
            f"(levels {low:.3g} .. {high:.3g}, threshold half way above the pre-marker level); "
            "expected the light edge of the photodiode patch after each marker (check the "
            "channel name and that the presenter drew the patch)"
        )
    return out


def edge_delays_ms(edges: np.ndarray, marker_samples: np.ndarray, sfreq: float) -> np.ndarray:
    """Marker-to-light delays in ms (NaN where the edge is missing, ``edges == -1``)."""
    edges = np.asarray(edges, dtype=np.int64)
    d = (edges - np.asarray(marker_samples, dtype=np.int64)) * (1000.0 / float(sfreq))
    return np.where(edges >= 0, d, np.nan)


def photodiode_summary(delays_ms: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """``{"n", "missing", "mean_ms", "sd_ms", "min_ms", "max_ms"}`` of marker-to-light delays.

    ``n`` counts the trials; NaN delays are the ones whose edge is missing. The figures
    are None when no edge was found. ``hist`` (:func:`delay_histogram`) is added for the
    report's histogram.
    """
    d = np.asarray(delays_ms, dtype=np.float64).ravel()
    ok = d[np.isfinite(d)]
    out: dict[str, float | int | None] = {"n": int(d.size), "missing": int(d.size - ok.size)}
    if ok.size:
        out.update(
            mean_ms=round(float(ok.mean()), 3),
            sd_ms=round(float(ok.std(ddof=1)), 3) if ok.size > 1 else 0.0,
            min_ms=round(float(ok.min()), 3),
            max_ms=round(float(ok.max()), 3),
        )
    else:
        out.update(mean_ms=None, sd_ms=None, min_ms=None, max_ms=None)
    out["hist"] = delay_histogram(ok)
    return out


def delay_histogram(delays_ms: np.ndarray, bin_ms: float = 2.0) -> dict[str, object]:
    """``{"bin_ms", "start_ms", "counts"}``: the delays in ``bin_ms`` bins (report.html's plot)."""
    d = np.asarray(delays_ms, dtype=np.float64)
    d = d[np.isfinite(d)]
    if not d.size:
        return {"bin_ms": bin_ms, "start_ms": 0.0, "counts": []}
    start = float(np.floor(d.min() / bin_ms) * bin_ms)
    n_bins = int(np.floor((d.max() - start) / bin_ms)) + 1
    counts = np.bincount(((d - start) // bin_ms).astype(np.int64), minlength=n_bins)[:n_bins]
    return {"bin_ms": bin_ms, "start_ms": start, "counts": [int(c) for c in counts]}
