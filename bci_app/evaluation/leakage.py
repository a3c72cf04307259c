"""Leakage guard: the block-design probe (the split check is ``bci_app.datasets.check_split_disjoint``).

The Spampinato EEG-ImageNet recordings showed all images of a class in one block, so
slow drifts and the time within the session carry the class (Li et al., TPAMI 2020):
a decoder can score well while reading *when* a trial happened instead of *what* was
seen. The probe here is a classifier that is denied the stimulus-locked EEG and sees
only

- the trial's position in time (onset in seconds, or the trial index when onsets are
  unknown), within its subject/session, and optionally
- slow-drift features: the mean of each channel over a window *before* the stimulus
  (a low-pass view of the signal that cannot contain the current trial's response).

It is trained on the train split and scored on the test split (the same split as the
model). In a randomised (rapid) design these features are independent of the class,
so the probe sits at chance; when it beats chance significantly (permutation test)
the data set's design leaks and every decoding figure on it is suspect.

The window's own mean is deliberately *not* a probe feature: the evoked response
itself shifts it, so it would "detect leakage" in a perfectly randomised design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from bci_app.datasets import check_split_disjoint
from bci_app.evaluation.stats import permutation_p_value

__all__ = ["ProbeResult", "block_design_probe", "prestimulus_drift"]


@dataclass
class ProbeResult:
    """Outcome of :func:`block_design_probe` (``to_dict`` goes to metrics.json)."""

    acc: float
    chance: float  # mean accuracy of the probe under shuffled labels (its own chance level)
    p: float  # one-sided permutation p-value
    flagged: bool
    chance_uniform: float  # 1 / n_classes
    n_train: int
    n_test: int
    features: list[str] = field(default_factory=list)
    alpha: float = 0.01
    n_perm: int = 0
    n_neighbors: int = 1
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def prestimulus_drift(data: np.ndarray, onset_samples: np.ndarray, sfreq: float, window_s: float = 1.0) -> np.ndarray:
    """Per-trial mean of each channel over ``[onset - window_s, onset)`` (slow drift).

    Parameters
    ----------
    data : ndarray [C, n_samples]
        The continuous recording (e.g. ``raw.get_data()``).
    onset_samples : ndarray [N]
        Sample index of each stimulus onset.

    Returns
    -------
    ndarray [N, C]; trials whose window starts before the recording are given the mean
    of the available samples (at least one sample is required).
    """
    data = np.asarray(data)
    if data.ndim != 2:
        raise ValueError(f"data must be [n_channels, n_samples], got shape {data.shape}")
    n = int(round(window_s * sfreq))
    if n < 1:
        raise ValueError(f"window_s * sfreq must be >= 1 sample, got {window_s} s at {sfreq} Hz")
    cs = np.concatenate([np.zeros((data.shape[0], 1)), np.cumsum(data, axis=1, dtype=np.float64)], axis=1)
    out = np.empty((len(onset_samples), data.shape[0]))
    for i, k in enumerate(np.asarray(onset_samples, dtype=np.int64)):
        a, b = max(0, k - n), min(k, data.shape[1])
        if b <= a:
            raise ValueError(f"trial {i}: onset sample {k} leaves no pre-stimulus samples")
        out[i] = (cs[:, b] - cs[:, a]) / (b - a)
    return out


def _as_index(sel: np.ndarray | Sequence, n: int, name: str) -> np.ndarray:
    sel = np.asarray(sel)
    if sel.dtype == bool:
        if sel.shape != (n,):
            raise ValueError(f"{name} mask must have shape ({n},), got {sel.shape}")
        return np.flatnonzero(sel)
    sel = sel.astype(np.int64)
    if sel.size and (sel.min() < 0 or sel.max() >= n):
        raise ValueError(f"{name} indices must be in 0..{n - 1}")
    return sel


def _vote(neigh_labels: np.ndarray) -> np.ndarray:
    """Majority label per row; ties go to the label of the nearest neighbour among them."""
    if neigh_labels.shape[1] == 1:
        return neigh_labels[:, 0]
    out = np.empty(len(neigh_labels), dtype=neigh_labels.dtype)
    for i, row in enumerate(neigh_labels):
        vals, first, counts = np.unique(row, return_index=True, return_counts=True)
        best = counts == counts.max()
        out[i] = vals[best][np.argmin(first[best])]
    return out


def block_design_probe(
    labels: np.ndarray,
    train: np.ndarray | Sequence,
    test: np.ndarray | Sequence,
    *,
    onsets: np.ndarray | None = None,
    trial_index: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    drift: np.ndarray | None = None,
    stim_ids: Sequence[str] | None = None,
    n_neighbors: int = 1,
    n_perm: int = 200,
    alpha: float = 0.01,
    rng: np.random.Generator | int | None = 0,
) -> ProbeResult:
    """Can the class be predicted from *when* a trial happened? (block-design leakage).

    Parameters
    ----------
    labels : ndarray [N] of int
        Class of each trial.
    train, test : boolean masks [N] or index arrays
        The model's split (by image). ``stim_ids`` given: checked to be disjoint.
    onsets : ndarray [N], optional
        Onset time (s) of each trial within its session. Preferred time feature.
    trial_index : ndarray [N], optional
        Presentation order, used when ``onsets`` is None (data sets without times).
    groups : ndarray [N], optional
        Subject/session of each trial: neighbours are only searched within a group.
    drift : ndarray [N, D], optional
        Slow-drift features (e.g. :func:`prestimulus_drift`), standardised on train.
    n_neighbors : int
        k of the k-nearest-neighbour probe (nearest in time/drift).
    n_perm : int
        Label permutations (within groups) for the p-value and the probe's chance level.
    alpha : float
        Flag when ``p < alpha`` and the accuracy is above the chance level.
    """
    labels = np.asarray(labels)
    n = len(labels)
    tr = _as_index(train, n, "train")
    te = _as_index(test, n, "test")
    if len(tr) == 0 or len(te) == 0:
        raise ValueError(f"the probe needs train and test trials, got {len(tr)} train and {len(te)} test")
    if np.intersect1d(tr, te).size:
        raise ValueError("train and test share trials; the probe needs a proper split")
    if stim_ids is not None:
        check_split_disjoint([str(s) for s in stim_ids], {"train": tr, "test": te}, "leakage probe split")
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}")

    feats: list[np.ndarray] = []
    names: list[str] = []
    if onsets is not None:
        feats.append(np.asarray(onsets, dtype=np.float64).reshape(n, 1))
        names.append("onset_time")
    elif trial_index is not None:
        feats.append(np.asarray(trial_index, dtype=np.float64).reshape(n, 1))
        names.append("trial_index")
    if drift is not None:
        d = np.asarray(drift, dtype=np.float64)
        if d.ndim != 2 or len(d) != n:
            raise ValueError(f"drift must be [N={n}, D], got shape {d.shape}")
        feats.append(d)
        names.append(f"prestimulus_drift[{d.shape[1]}]")
    if not feats:
        raise ValueError("the probe needs onsets, trial_index or drift features; none were given")
    F = np.concatenate(feats, axis=1)
    mu = F[tr].mean(axis=0)
    sd = F[tr].std(axis=0)
    F = (F - mu) / np.where(sd > 0, sd, 1.0)
    if drift is not None and F.shape[1] > 1:
        # give time and drift equal weight: each block of drift columns sums to one unit
        F[:, -drift.shape[1] :] /= np.sqrt(drift.shape[1])
    groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {groups.shape}")

    # neighbours never change under label permutation: find them once
    neigh = np.full((len(te), n_neighbors), -1, dtype=np.int64)
    for g in np.unique(groups[te]):
        te_g = np.flatnonzero(groups[te] == g)
        tr_g = tr[groups[tr] == g]
        if len(tr_g) == 0:
            raise ValueError(f"group {g!r} has test trials but no train trials; the probe cannot score it")
        kk = min(n_neighbors, len(tr_g))
        dist = ((F[te[te_g]][:, None, :] - F[tr_g][None, :, :]) ** 2).sum(axis=2)
        order = np.argsort(dist, axis=1, kind="stable")[:, :kk]
        neigh[te_g, :kk] = tr_g[order]
        if kk < n_neighbors:
            neigh[te_g, kk:] = neigh[te_g, :1]

    def accuracy(lab: np.ndarray) -> float:
        return float(np.mean(_vote(lab[neigh]) == lab[te]))

    acc = accuracy(labels)
    rng = np.random.default_rng(rng)
    null = np.empty(n_perm)
    for b in range(n_perm):
        perm = labels.copy()
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            perm[idx] = labels[rng.permutation(idx)]
        null[b] = accuracy(perm)
    chance = float(null.mean()) if n_perm else float("nan")
    p = permutation_p_value(acc, null) if n_perm else float("nan")
    flagged = bool(n_perm and p < alpha and acc > chance)
    n_classes = len(np.unique(labels))
    what = " + ".join(names)
    if flagged:
        msg = (
            f"LEAKAGE: a probe that sees only {what} (not the stimulus-locked EEG) predicts the "
            f"class of test trials with accuracy {acc:.3f} against a chance level of {chance:.3f} "
            f"(p = {p:.3g}, {n_perm} permutations). The data set's design (e.g. classes shown "
            "in blocks) lets a decoder read time instead of the image; decoding figures on "
            "these data overstate what the EEG carries about the image."
        )
    else:
        msg = (
            f"no design leakage detected: a probe on {what} scores {acc:.3f} against a chance "
            f"level of {chance:.3f} (p = {p:.3g})."
        )
    return ProbeResult(
        acc=acc,
        chance=chance,
        p=float(p),
        flagged=flagged,
        chance_uniform=1.0 / max(n_classes, 1),
        n_train=int(len(tr)),
        n_test=int(len(te)),
        features=names,
        alpha=alpha,
        n_perm=int(n_perm),
        n_neighbors=int(n_neighbors),
        message=msg,
    )
