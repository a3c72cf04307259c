"""The linear baseline decoder: shrinkage LDA on time-binned EEG windows.

Evaluation reports it next to the deep decoder ("a linear-baseline decoder measured on
the same trials"): if a deep model does not beat this, it has learned nothing a
linear read-out could not. It is also what calibrates the virtual subject
(``snr=1.0`` -> roughly 35-60 % single-trial 40-way accuracy).

Features: each channel's mean over consecutive ``bin_ms`` bins of the window
(``[N, C, T]`` -> ``[N, C * (T // bin)]``), standardised; classifier:
``sklearn.discriminant_analysis.LinearDiscriminantAnalysis(solver="lsqr",
shrinkage="auto")`` (Ledoit-Wolf shrinkage, robust with more features than trials).
"""

from __future__ import annotations

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis


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
        self._lda: LinearDiscriminantAnalysis | None = None
        self._shape: tuple[int, int] | None = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None

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
        self._lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        self._lda.fit((F - self._mean) / self._std, y)
        return self

    def _check_fitted(self) -> LinearDiscriminantAnalysis:
        if self._lda is None:
            raise RuntimeError("LinearBaseline is not fitted; call fit(X, y) first")
        return self._lda

    def _transform(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return (self.features(X) - self._mean) / self._std

    @property
    def classes_(self) -> np.ndarray:
        return self._check_fitted().classes_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Class scores ``[N, n_classes]`` (columns in the order of ``classes_``)."""
        return self._check_fitted().decision_function(self._transform(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, n_classes]`` (columns in the order of ``classes_``)."""
        return self._check_fitted().predict_proba(self._transform(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels ``[N]``."""
        return self._check_fitted().predict(self._transform(X))

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Top-1 accuracy on ``(X, y)``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))
