"""Sample-level decoding: the semantic head ``M_s``.

Maps the EEG feature ``f_theta(x)`` to the text-conditioning embeddings ``[L, D]`` the
refiner's cross-attention expects (eq. 7: L2 to the caption embeddings of the seen
image). Two forms, chosen by ``n_prototypes``:

- ``0``: an MLP regressing the ``L * D`` values directly (the paper's form);
- ``K > 0``: a soft mixture of ``K`` learned embedding prototypes (initialised from the
  class-caption embeddings) plus a low-rank residual. With label captions the targets
  are ``K`` distinct points, so the mixture keeps the prediction on the manifold of real
  caption embeddings instead of averaging them into an embedding no caption has.

With ``logits_from="features"`` the mixture weights are a linear read-out of the EEG
feature itself (not of the hidden layer), which :meth:`SemanticHead.init_logits` can start
from the encoder's class read-out: the head then starts by choosing the caption of the
class the encoder decodes, and eq. (7) fine-tunes it.

The prototype mixture is a closed set: each prototype has its own learned weight row, so
it can only choose among the captions it trained on. With ``open_set=True`` the
prototypes are fixed caption embeddings (candidates) and a prototype's weight is the
cosine between a learned read-out of the EEG (a point in the embedding space) and the
candidate's embedding, centred on the training candidates' mean and scaled by a learned
factor. A candidate needs no weights of its own, so :meth:`SemanticHead.set_candidates`
can add captions the head never trained on (e.g. the held-out classes' label captions,
embedded by the same text encoder): a trial whose EEG points towards "purple" and "star"
can land on "an image of a purple star" though no purple star was in training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bci_app.models.bundle import ConfigModule
from bci_app.models.losses import semantic_l2_loss


class SemanticHead(ConfigModule):
    """``M_s``: features ``[B, in_features]`` -> embeddings ``[B, seq_len, embed_dim]``."""

    def __init__(self, in_features: int, seq_len: int = 16, embed_dim: int = 384,
                 hidden: int = 256, n_prototypes: int = 0, dropout: float = 0.1,
                 temperature: float = 1.0, logits_from: str = "hidden", open_set: bool = False) -> None:
        super().__init__()
        if logits_from not in ("hidden", "features"):
            raise ValueError(f"logits_from must be 'hidden' or 'features', got {logits_from!r}")
        if open_set and n_prototypes < 1:
            raise ValueError(f"open_set needs n_prototypes >= 1 (the candidate captions), got {n_prototypes}")
        config = {"in_features": in_features, "seq_len": seq_len, "embed_dim": embed_dim, "hidden": hidden,
                  "n_prototypes": n_prototypes, "dropout": dropout, "temperature": temperature,
                  "logits_from": logits_from}
        # recorded only when set: the config of a closed head stays what earlier bundles hold
        self.register_config(**config, **({"open_set": True} if open_set else {}))
        self.logits_from = logits_from
        self.open_set = bool(open_set)
        self.in_features, self.seq_len, self.embed_dim = in_features, seq_len, embed_dim
        self.n_prototypes = n_prototypes
        self.temperature = temperature
        self.trunk = nn.Sequential(nn.LayerNorm(in_features), nn.Linear(in_features, hidden),
                                   nn.GELU(), nn.Dropout(dropout))
        out = seq_len * embed_dim
        if open_set:
            self.query = nn.Linear(in_features if logits_from == "features" else hidden, out)
            self.register_buffer("prototypes", torch.zeros(n_prototypes, out))
            self.register_buffer("centre", torch.zeros(out))
            self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        elif n_prototypes > 0:
            self.logits = nn.Linear(in_features if logits_from == "features" else hidden, n_prototypes)
            self.prototypes = nn.Parameter(torch.zeros(n_prototypes, out))
            self.residual = nn.Linear(hidden, out)
            nn.init.zeros_(self.residual.weight)
            nn.init.zeros_(self.residual.bias)
        else:
            self.head = nn.Linear(hidden, out)

    @torch.no_grad()
    def init_prototypes(self, embeddings: torch.Tensor) -> None:
        """Set the prototypes to ``embeddings [K, L, D]`` (e.g. the class captions'); an
        open-set head also takes their mean as the centre its cosines are measured from."""
        if self.n_prototypes == 0:
            raise RuntimeError("init_prototypes needs a head built with n_prototypes > 0")
        expected = (self.n_prototypes, self.seq_len, self.embed_dim)
        if tuple(embeddings.shape) != expected:
            raise ValueError(f"prototype embeddings must be {expected}, got {tuple(embeddings.shape)}")
        self.prototypes.copy_(embeddings.reshape(self.n_prototypes, -1))
        if self.open_set:
            self.centre.copy_(self.prototypes.mean(0))

    @torch.no_grad()
    def set_candidates(self, embeddings: torch.Tensor) -> None:
        """Replace an open-set head's candidate captions by ``embeddings [K, L, D]`` (any
        number, any captions embedded by the text encoder it trained with); saved with the
        head. The centre stays the training candidates' mean, so a candidate's weight
        before normalisation does not depend on which others are offered."""
        if not self.open_set:
            raise RuntimeError("set_candidates needs an open-set head (open_set=True); a closed head "
                               "knows only the captions it trained on")
        if embeddings.ndim != 3 or tuple(embeddings.shape[1:]) != (self.seq_len, self.embed_dim) or not len(embeddings):
            raise ValueError(f"candidate embeddings must be [K >= 1, {self.seq_len}, {self.embed_dim}], "
                             f"got {tuple(embeddings.shape)}")
        flat = embeddings.reshape(len(embeddings), -1).to(self.centre)
        self.prototypes = flat.clone()  # a buffer of the new size
        self.n_prototypes = len(flat)
        self.config["n_prototypes"] = len(flat)

    @torch.no_grad()
    def init_query(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Start an open-set head (``logits_from="features"``) from a linear class read-out of
        the features (``weight [K, in_features]``, ``bias [K]``, row ``k`` = candidate ``k``).

        The query is the read-out's scores mapped back through the pseudo-inverse of the
        candidates' (centred, normalised) embeddings, so the cosine with candidate ``k`` is the
        read-out's score ``k`` divided by the query's norm: the head starts by choosing the
        caption of the class the read-out decodes. A caption added later
        (:meth:`set_candidates`) scores what the read-out's scores say about its own
        embedding: the combination of the training captions' scores that composes it."""
        if not self.open_set or self.logits_from != "features":
            raise RuntimeError("init_query needs an open-set head with logits_from='features'")
        expected = ((self.n_prototypes, self.in_features), (self.n_prototypes,))
        if (tuple(weight.shape), tuple(bias.shape)) != expected:
            raise ValueError(f"read-out must be weight {expected[0]} and bias {expected[1]} (one row per "
                             f"candidate), got {tuple(weight.shape)} and {tuple(bias.shape)}")
        centred = self.prototypes - self.centre
        norms = centred.norm(dim=-1)
        back = torch.linalg.pinv(centred / norms[:, None])  # [L*D, K]
        # the centred keys span every score vector orthogonal to their norms, so each trial's
        # scores are shifted by one constant onto that span (which keeps their order) first
        shift = torch.eye(len(norms)).to(back) - torch.outer(torch.ones_like(norms), norms) / norms.sum()
        self.query.weight.copy_(back @ shift @ weight.to(back))
        self.query.bias.copy_(back @ shift @ bias.to(back))
        self.log_scale.fill_(math.log(10.0))

    @torch.no_grad()
    def init_logits(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Start the mixture read-out from a linear class read-out of the features
        (``weight [K, in_features]``, ``bias [K]``; needs ``logits_from="features"``)."""
        if self.n_prototypes == 0 or self.logits_from != "features" or self.open_set:
            raise RuntimeError("init_logits needs n_prototypes > 0, logits_from='features' and a closed head "
                               "(an open-set head has no weight row per prototype)")
        if tuple(weight.shape) != tuple(self.logits.weight.shape) or tuple(bias.shape) != tuple(self.logits.bias.shape):
            raise ValueError(
                f"read-out must be weight {tuple(self.logits.weight.shape)} and bias "
                f"{tuple(self.logits.bias.shape)}, got {tuple(weight.shape)} and {tuple(bias.shape)}"
            )
        self.logits.weight.copy_(weight)
        self.logits.bias.copy_(bias)

    def set_temperature(self, temperature: float) -> None:
        """Sharpen (< 1) or soften the prototype mixture at sampling time (saved with the
        head). Eq. (7) trains the mixture towards the posterior mean of the caption
        embeddings, a blend when the EEG is ambiguous; a refiner guided by a blend draws
        an ambiguous object, one guided by the most probable caption commits to it."""
        if not temperature > 0:
            raise ValueError(f"semantic temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.config["temperature"] = float(temperature)

    def _logits(self, feats: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        x = feats if self.logits_from == "features" else h
        if self.open_set:
            q = F.normalize(self.query(x), dim=-1)
            keys = F.normalize(self.prototypes - self.centre, dim=-1)
            return self.log_scale.exp() * q @ keys.T
        return self.logits(x)

    def mixture_weights(self, feats: torch.Tensor) -> torch.Tensor | None:
        if self.n_prototypes == 0:
            return None
        return F.softmax(self._logits(feats, self.trunk(feats)) / self.temperature, dim=-1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.embed(feats)[0]

    def embed(self, feats: torch.Tensor, temperature: float | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The caption embeddings ``[B, L, D]`` and, for the prototype head, the mixture
        weights ``[B, K]`` they were mixed with (one pass of the trunk for both).
        ``temperature``: instead of the sampling one (1: the head's own prediction, eq. 7)."""
        if feats.ndim != 2 or feats.shape[1] != self.in_features:
            raise ValueError(f"SemanticHead expects features [B, {self.in_features}], got {tuple(feats.shape)}")
        t = self.temperature if temperature is None else float(temperature)
        h = self.trunk(feats)
        w = None
        if self.open_set:  # on the candidates' hull: no residual to carry them off it
            w = F.softmax(self._logits(feats, h) / t, dim=-1)
            out = w @ self.prototypes
        elif self.n_prototypes > 0:
            w = F.softmax(self._logits(feats, h) / t, dim=-1)
            out = w @ self.prototypes + self.residual(h)
        else:
            out = self.head(h)
        return out.view(len(feats), self.seq_len, self.embed_dim), w

    def loss(self, feats: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Eq. (7)."""
        return semantic_l2_loss(self(feats), target)
