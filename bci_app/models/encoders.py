"""EEG encoders ``f_theta``: ``(batch, n_chans, n_times) -> (batch, n_outputs)``.

braindecode-style signature ``(n_chans, n_outputs, n_times, sfreq=None, ...)``; selected
by name through :data:`ENCODERS` / :func:`build_encoder`:

- ``"lstm"``: the Brain2Image feature extractor (Kavasidis et al. 2017, used by the seed
  paper): an LSTM over time, its last hidden state through a fully connected layer.
- ``"shallow"``: a ShallowConvNet-style network (Schirrmeister et al. 2017): temporal
  convolution, spatial convolution, squaring, average pooling, log, dropout, linear.
- ``"binned_linear"``: spatial whitening (shrinkage covariance, fitted on training data),
  temporal binning and one linear layer: the neural counterpart of shrinkage LDA,
  strong with a few thousand single trials.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bci_app.models.bundle import ConfigModule

#: head logit of a class that had no training trials (its posterior is 0, its row untrained)
ABSENT_CLASS_LOGIT = -1.0e4


def _check_input(x: torch.Tensor, n_chans: int, n_times: int, name: str) -> None:
    if x.ndim != 3 or x.shape[1] != n_chans or x.shape[2] != n_times:
        raise ValueError(
            f"{name} expects input (batch, {n_chans}, {n_times}); got {tuple(x.shape)}"
        )


def _pool_factor(sfreq: float | None, target: float) -> int:
    if sfreq is None or sfreq <= target:
        return 1
    return max(1, int(round(sfreq / target)))


class LSTMEncoder(ConfigModule):
    """Brain2Image LSTM feature extractor.

    Parameters
    ----------
    n_chans, n_outputs, n_times, sfreq
        braindecode signature; ``n_outputs`` is the feature size (128 in the paper).
    hidden_size, num_layers : LSTM size (128, 1 in Kavasidis et al.).
    resample_to : float
        The input is average-pooled in time to about this rate first (cheaper sequence).
    dropout : float
    """

    def __init__(
        self,
        n_chans: int,
        n_outputs: int,
        n_times: int,
        sfreq: float | None = None,
        hidden_size: int = 128,
        num_layers: int = 1,
        resample_to: float = 250.0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.register_config(
            n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, sfreq=sfreq,
            hidden_size=hidden_size, num_layers=num_layers, resample_to=resample_to, dropout=dropout,
        )
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        self.pool = _pool_factor(sfreq, resample_to)
        self.lstm = nn.LSTM(n_chans, hidden_size, num_layers=num_layers, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.n_chans, self.n_times, type(self).__name__)
        if self.pool > 1:
            x = F.avg_pool1d(x, self.pool, self.pool)
        out, _ = self.lstm(x.transpose(1, 2))
        return F.relu(self.fc(self.drop(out[:, -1])))


class ShallowConvEncoder(ConfigModule):
    """ShallowConvNet-style encoder (temporal conv -> spatial conv -> square -> pool -> log).

    Parameters
    ----------
    n_filters : feature maps of the temporal and spatial convolutions.
    kernel_ms, pool_ms, stride_ms : temporal kernel, pooling window and stride in ms
        (converted with ``sfreq`` after resampling to ``resample_to``).
    """

    def __init__(
        self,
        n_chans: int,
        n_outputs: int,
        n_times: int,
        sfreq: float | None = None,
        n_filters: int = 40,
        kernel_ms: float = 50.0,
        pool_ms: float = 100.0,
        stride_ms: float = 20.0,
        resample_to: float = 250.0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.register_config(
            n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, sfreq=sfreq,
            n_filters=n_filters, kernel_ms=kernel_ms, pool_ms=pool_ms, stride_ms=stride_ms,
            resample_to=resample_to, dropout=dropout,
        )
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        self.pool = _pool_factor(sfreq, resample_to)
        rate = (sfreq or 1000.0) / self.pool
        t = n_times // self.pool
        k = max(1, min(t, int(round(kernel_ms * rate / 1000))))
        pw = max(1, min(t - k + 1, int(round(pool_ms * rate / 1000))))
        ps = max(1, int(round(stride_ms * rate / 1000)))
        self.temporal = nn.Conv2d(1, n_filters, (1, k))
        self.spatial = nn.Conv2d(n_filters, n_filters, (n_chans, 1), bias=False)
        self.bn = nn.BatchNorm2d(n_filters)
        self.avg = nn.AvgPool2d((1, pw), (1, ps))
        self.drop = nn.Dropout(dropout)
        n_out_t = (t - k + 1 - pw) // ps + 1
        self.fc = nn.Linear(n_filters * n_out_t, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.n_chans, self.n_times, type(self).__name__)
        if self.pool > 1:
            x = F.avg_pool1d(x, self.pool, self.pool)
        h = self.bn(self.spatial(self.temporal(x.unsqueeze(1))))
        h = torch.log(torch.clamp(self.avg(h * h), min=1e-6))
        return self.fc(self.drop(h.flatten(1)))


class BinnedLinearEncoder(ConfigModule):
    """Spatial whitening -> temporal bins -> dropout -> linear.

    ``whitening`` (a ``[C, C]`` buffer saved with the weights) is identity until
    :meth:`fit_whitening` sets it to the inverse square root of the shrinkage (Ledoit-Wolf)
    covariance of the within-class residuals, as shrinkage LDA does.
    """

    def __init__(
        self,
        n_chans: int,
        n_outputs: int,
        n_times: int,
        sfreq: float | None = None,
        bin_ms: float = 20.0,
        dropout: float = 0.5,
        hidden: int = 0,
    ) -> None:
        super().__init__()
        self.register_config(
            n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, sfreq=sfreq,
            bin_ms=bin_ms, dropout=dropout, hidden=hidden,
        )
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        self.bin = max(1, min(n_times, int(round(bin_ms * (sfreq or 1000.0) / 1000))))
        self.n_bins = n_times // self.bin
        self.register_buffer("whitening", torch.eye(n_chans))
        self.drop = nn.Dropout(dropout)
        n_in = n_chans * self.n_bins
        if hidden:
            self.fc = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Dropout(dropout),
                                    nn.Linear(hidden, n_outputs))
        else:
            self.fc = nn.Linear(n_in, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.einsum("dc,bct->bdt", self.whitening.to(x.dtype), x)
        x = x[:, :, : self.n_bins * self.bin]
        return F.avg_pool1d(x, self.bin, self.bin).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.n_chans, self.n_times, type(self).__name__)
        return self.fc(self.drop(self.features(x)))

    @torch.no_grad()
    def fit_lda(self, X: np.ndarray, labels: np.ndarray, head: ClassifierHead | None = None,
                attributes: dict[str, list[int]] | None = None,
                layout: np.ndarray | None = None, layout_names: tuple[str, ...] | None = None) -> dict:
        """Start from the closed-form shrinkage-LDA solution on this encoder's binned features.

        The first ``n_classes`` outputs become LDA's class scores (features standardised,
        Ledoit-Wolf shrinkage, lsqr solver: the linear baseline's decoder), the other outputs
        start at zero, and ``head`` (if given) starts as the identity read-out of those
        scores, which reproduces LDA's decisions. Triplet training then starts from a decoder
        as good as the linear baseline instead of from random weights.

        ``attributes`` (``{name: [value index of each class]}``, e.g. the demo set's shape and
        colour) adds one LDA per attribute, fitted on the same trials with the attribute as
        label; its scores take the next outputs and the head adds, to each class's score,
        the scores of that class's attribute values (a sum of log-likelihoods, as if the
        attributes were independent evidence). An attribute value is learnt from every class
        that has it (e.g. 8 x 35 "red" trials instead of 35 per class), which is where this
        beats a flat 40-class LDA when classes share attributes.

        ``layout`` (``[N, K]`` per-trial continuous targets, e.g. the object's x, y and size)
        adds K ridge regressions (penalty chosen by leave-one-out on these trials) on the
        same features, standardised targets, in the next K outputs; the head ignores them.
        The returned ``info["layout"]`` names those outputs and the targets' mean and std,
        so that ``output * std + mean`` is the decoded layout in the targets' units.
        """
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        if self.fc.__class__ is not nn.Linear:
            raise RuntimeError("fit_lda needs hidden=0 (a single linear layer)")
        labels = np.asarray(labels)
        self.whitening.copy_(torch.eye(self.n_chans))
        feats = self.features(torch.as_tensor(np.asarray(X, dtype=np.float32))).double().numpy()
        mu, sd = feats.mean(0), feats.std(0) + 1e-8
        z = (feats - mu) / sd

        def lda(y):
            m = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(z, y)
            coef, icpt = m.coef_, m.intercept_
            if len(m.classes_) == 2:  # sklearn keeps one row (log-odds); split it symmetrically
                coef, icpt = np.stack([-coef[0], coef[0]]) / 2, np.array([-icpt[0], icpt[0]]) / 2
            return m, coef, icpt

        cls, c_coef, c_icpt = lda(labels)
        classes = cls.classes_
        n_cls = len(classes)
        blocks = [(c_coef, c_icpt)]
        read = [np.eye(n_cls)]  # head: class logit <- output rows
        for name, values in (attributes or {}).items():
            values = np.asarray(values)
            if values.ndim != 1 or len(values) <= int(classes.max()):
                raise ValueError(
                    f"attribute {name!r} must give one value per class (>= {int(classes.max()) + 1}), "
                    f"got shape {values.shape}"
                )
            m, a_coef, a_icpt = lda(values[labels])
            blocks.append((a_coef, a_icpt))
            # class k gets the score of its own value of this attribute
            onehot = (values[classes][:, None] == m.classes_[None, :]).astype(np.float64)
            read.append(onehot)
        n_read = sum(len(b[1]) for b in blocks)  # outputs the class head reads
        lay_info = None
        if layout is not None:
            layout = np.asarray(layout, dtype=np.float64)
            if layout.ndim != 2 or len(layout) != len(labels) or not np.isfinite(layout).all():
                raise ValueError(
                    f"layout must be finite [{len(labels)}, K] (one row per trial), got shape {layout.shape}"
                )
            from sklearn.linear_model import RidgeCV

            l_mu, l_sd = layout.mean(0), layout.std(0) + 1e-8
            target = (layout - l_mu) / l_sd
            ridge = RidgeCV(alphas=np.logspace(-1, 5, 13)).fit(z, target)
            blocks.append((np.atleast_2d(ridge.coef_), np.atleast_1d(ridge.intercept_)))
            fitted = ridge.predict(z).reshape(target.shape)
            names = list(layout_names) if layout_names is not None else [f"layout{k}" for k in range(layout.shape[1])]
            if len(names) != layout.shape[1]:
                raise ValueError(f"layout_names must name {layout.shape[1]} columns, got {names}")
            lay_info = {
                "names": names, "outputs": list(range(n_read, n_read + layout.shape[1])),
                "mean": l_mu.tolist(), "std": l_sd.tolist(), "alpha": float(ridge.alpha_),
                "train_r2": (1 - ((fitted - target) ** 2).mean(0) / target.var(0).clip(1e-12)).round(4).tolist(),
            }
        n_used = sum(len(b[1]) for b in blocks)
        if self.n_outputs < n_used:
            raise ValueError(
                f"fit_lda needs n_outputs >= {n_used} ({n_cls} classes + attribute values"
                f"{' + layout' if layout is not None else ''}), got {self.n_outputs}"
            )
        w = np.zeros((self.n_outputs, feats.shape[1]))
        b = np.zeros(self.n_outputs)
        coef = np.concatenate([c for c, _ in blocks])
        icpt = np.concatenate([i for _, i in blocks])
        w[:n_used] = coef / sd[None, :]
        b[:n_used] = icpt - coef @ (mu / sd)
        self.fc.weight.copy_(torch.as_tensor(w, dtype=self.fc.weight.dtype))
        self.fc.bias.copy_(torch.as_tensor(b, dtype=self.fc.bias.dtype))
        readout = np.zeros((n_cls, self.n_outputs))
        readout[:, :n_read] = np.concatenate(read, axis=1)
        if head is not None:
            # the head's outputs are indexed by class id; the LDA's rows follow the classes
            # present in the training trials (``classes``), which may be a subset in any order
            n_head = head.fc.out_features
            if int(classes.min()) < 0 or int(classes.max()) >= n_head:
                raise ValueError(
                    f"class labels must be ids in [0, {n_head}) (the head's classes); got "
                    f"{int(classes.min())}..{int(classes.max())}"
                )
            head.fc.weight.zero_()
            head.fc.bias.fill_(ABSENT_CLASS_LOGIT)  # classes without training trials: never chosen
            rows = torch.as_tensor(classes.astype(np.int64))
            head.fc.weight[rows] = torch.as_tensor(readout, dtype=head.fc.weight.dtype)
            head.fc.bias[rows] = 0.0
        pred = classes[np.argmax((feats @ w.T + b) @ readout.T, axis=1)]
        return {"train_acc": float((pred == labels).mean()), "classes": int(n_cls),
                "attributes": sorted(attributes or {}), "outputs_used": int(n_used), "layout": lay_info}

    @torch.no_grad()
    def fit_whitening(self, X: np.ndarray, labels: np.ndarray) -> None:
        """Fit the spatial whitening on training trials ``X [N, C, T]`` with ``labels``."""
        from sklearn.covariance import ledoit_wolf

        X = np.asarray(X, dtype=np.float64)
        labels = np.asarray(labels)
        resid = X.copy()
        for k in np.unique(labels):
            resid[labels == k] -= X[labels == k].mean(0, keepdims=True)
        samples = resid.transpose(0, 2, 1).reshape(-1, X.shape[1])
        if len(samples) > 200_000:  # the covariance needs far fewer samples than that
            samples = samples[:: len(samples) // 200_000 + 1]
        cov, _ = ledoit_wolf(samples)
        evals, evecs = np.linalg.eigh(cov)
        evals = np.clip(evals, evals.max() * 1e-6, None)
        w = evecs @ np.diag(evals**-0.5) @ evecs.T
        self.whitening.copy_(torch.as_tensor(w, dtype=self.whitening.dtype))


class ClassifierHead(ConfigModule):
    """Linear class read-out on encoder features (auxiliary loss / class probabilities)."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.register_config(in_features=in_features, n_classes=n_classes)
        self.fc = nn.Linear(in_features, n_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(feats)


ENCODERS: dict[str, type[ConfigModule]] = {
    "lstm": LSTMEncoder,
    "shallow": ShallowConvEncoder,
    "binned_linear": BinnedLinearEncoder,
}


def build_encoder(
    name: str, n_chans: int, n_outputs: int, n_times: int, sfreq: float | None = None, **kwargs
) -> ConfigModule:
    """Encoder ``name`` (a key of :data:`ENCODERS`) with the braindecode signature."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; allowed: {', '.join(ENCODERS)}")
    return ENCODERS[name](n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, sfreq=sfreq, **kwargs)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "ENCODERS", "LSTMEncoder", "ShallowConvEncoder", "BinnedLinearEncoder", "ClassifierHead",
    "build_encoder", "n_params",
]
