"""The linear baseline decoder: shrinkage LDA on time-binned EEG windows.

Evaluation reports it next to the deep decoder ("a linear-baseline decoder measured on
the same trials"): if a deep model does not beat this, it has learned nothing a
linear read-out could not. It is also what calibrates the virtual subject
(``snr=1.0`` -> roughly 35-60 % single-trial 40-way accuracy).

Features: each channel's mean over consecutive ``bin_ms`` bins of the window
(``[N, C, T]`` -> ``[N, C * (T // bin)]``), standardised; classifier:
``sklearn.discriminant_analysis.LinearDiscriminantAnalysis(solver="lsqr",
shrinkage="auto")`` (Ledoit-Wolf shrinkage, robust with more features than trials).

A bundle carries its own baseline, trained by ``bci-app train`` (stage ``baseline``) on
the bundle's training trials: :meth:`LinearBaseline.save` writes
``BUNDLE/baseline.safetensors`` (the linear read-out and the feature standardisation, the
settings in its metadata) and :meth:`LinearBaseline.load` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from bci_app.file_errors import reading

BASELINE_FILE = "baseline.safetensors"
BASELINE_FORMAT = "bci-app-linear-baseline"


class LinearBaseline:
    """Shrinkage LDA on time-binned channels.

    Parameters
    ----------
    bin_ms : float
        Width of the time bins in milliseconds (samples averaged per feature).
    sfreq : float
        Sampling rate of the windows (Hz), to turn ``bin_ms`` into samples.

    Examples
    --------
    >>> clf = LinearBaseline().fit(X_train, y_train)   # X: [N, C, T]
    >>> clf.score(X_test, y_test)
    """

    def __init__(self, bin_ms: float = 40.0, sfreq: float = 1000.0) -> None:
        if bin_ms <= 0:
            raise ValueError(f"bin_ms must be > 0 ms, got {bin_ms}")
        if sfreq <= 0:
            raise ValueError(f"sfreq must be > 0 Hz, got {sfreq}")
        self.bin_ms = float(bin_ms)
        self.sfreq = float(sfreq)
        self.bin_samples = max(1, int(round(self.bin_ms * self.sfreq / 1000.0)))
        self._shape: tuple[int, int] | None = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        # the fitted read-out: scores = standardised features @ coef.T + intercept
        self._coef: np.ndarray | None = None
        self._intercept: np.ndarray | None = None
        self._classes: np.ndarray | None = None

    # ---------------------------------------------------------------- features
    def features(self, X: np.ndarray) -> np.ndarray:
        """Time-binned features ``[N, C * n_bins]`` of windows ``X [N, C, T]`` (trailing samples that do not fill a bin are dropped)."""
        X = np.asarray(X)
        if X.ndim != 3:
            raise ValueError(f"X must be [n_trials, n_channels, n_times], got shape {X.shape}")
        n, c, t = X.shape
        if self._shape is not None and (c, t) != self._shape:
            raise ValueError(
                f"X has {c} channels x {t} samples but the baseline was fitted on "
                f"{self._shape[0]} x {self._shape[1]}"
            )
        n_bins = t // self.bin_samples
        if n_bins < 1:
            raise ValueError(
                f"windows of {t} samples are shorter than one {self.bin_samples}-sample bin"
            )
        Xb = X[:, :, : n_bins * self.bin_samples].reshape(n, c, n_bins, self.bin_samples)
        return Xb.mean(axis=3, dtype=np.float64).reshape(n, c * n_bins)

    # ---------------------------------------------------------------- sklearn-like API
    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearBaseline:
        """Fit on windows ``X [N, C, T]`` and labels ``y [N]``; returns ``self``."""
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} trials but y has {len(y)} labels")
        if len(np.unique(y)) < 2:
            raise ValueError("y must contain at least two classes")
        self._shape = None
        F = self.features(X)
        self._shape = tuple(np.asarray(X).shape[1:])
        self._mean = F.mean(axis=0)
        self._std = F.std(axis=0) + 1e-12
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        lda.fit((F - self._mean) / self._std, y)
        self._coef = np.atleast_2d(lda.coef_).astype(np.float64)
        self._intercept = np.atleast_1d(lda.intercept_).astype(np.float64)
        self._classes = np.asarray(lda.classes_)
        return self

    def _check_fitted(self) -> None:
        if self._coef is None:
            raise RuntimeError("LinearBaseline is not fitted; call fit(X, y) or LinearBaseline.load(dir) first")

    def _transform(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return (self.features(X) - self._mean) / self._std

    @property
    def classes_(self) -> np.ndarray:
        self._check_fitted()
        return self._classes

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Class scores ``[N, n_classes]`` (columns in the order of ``classes_``; ``[N]``, the
        second class's log-odds, for two classes, as in scikit-learn)."""
        scores = self._transform(X) @ self._coef.T + self._intercept
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, n_classes]`` (columns in the order of ``classes_``)."""
        d = self.decision_function(X)
        if d.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-d))
            return np.stack([1 - p, p], axis=1)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels ``[N]``."""
        d = self.decision_function(X)
        return self._classes[(d > 0).astype(int) if d.ndim == 1 else d.argmax(axis=1)]

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Top-1 accuracy on ``(X, y)``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # ---------------------------------------------------------------- files
    def settings(self) -> dict[str, Any]:
        """What the baseline was fitted on (recorded in the bundle's ``config.json``)."""
        self._check_fitted()
        return {"file": BASELINE_FILE, "bin_ms": self.bin_ms, "sfreq": self.sfreq,
                "n_channels": int(self._shape[0]), "n_times": int(self._shape[1]),
                "n_classes": int(len(self._classes))}

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/baseline.safetensors`` (weights, settings in its metadata)."""
        import torch
        from safetensors.torch import save_file

        self._check_fitted()
        if not np.issubdtype(self._classes.dtype, np.integer):
            raise ValueError(
                f"only integer class labels can be saved, got {self._classes.dtype}; fit on label indices"
            )
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in (
            ("coef", self._coef), ("intercept", self._intercept), ("classes", self._classes.astype(np.int64)),
            ("feature_mean", self._mean), ("feature_std", self._std))}
        path = directory / BASELINE_FILE
        tmp = directory / f".{BASELINE_FILE}.tmp"
        save_file(tensors, str(tmp), metadata={"format": BASELINE_FORMAT, "settings": json.dumps(self.settings())})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> LinearBaseline:
        """Read what :meth:`save` wrote into ``directory`` (e.g. a bundle)."""
        from safetensors import safe_open

        path = Path(directory) / BASELINE_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no linear baseline in {directory}: expected {path}; train it into the bundle with "
                f"`bci-app train --stages baseline --resume --data SPEC --out {directory}`"
            )
        with reading(path, "the linear baseline's safetensors file"):
            with safe_open(str(path), framework="np") as fh:
                meta = fh.metadata() or {}
                arrays = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        if meta.get("format") != BASELINE_FORMAT:
            raise ValueError(f"{path}: format {meta.get('format')!r}, expected {BASELINE_FORMAT!r}")
        s = json.loads(meta["settings"])
        model = cls(bin_ms=s["bin_ms"], sfreq=s["sfreq"])
        model._shape = (int(s["n_channels"]), int(s["n_times"]))
        model._coef, model._intercept = arrays["coef"], arrays["intercept"]
        model._classes = arrays["classes"]
        model._mean, model._std = arrays["feature_mean"], arrays["feature_std"]
        return model
