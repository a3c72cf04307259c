"""What the stages train on: P x K batches of trials, caption targets, image tensors and
the stimulus images of one split."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


class PKBatchSampler:
    """Batches of ``P`` classes x ``K`` trials (so every anchor has positives), seeded per epoch."""

    def __init__(self, labels: np.ndarray, p: int, k: int, seed: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.by_class = {c: np.nonzero(self.labels == c)[0] for c in np.unique(self.labels)}
        self.p, self.k, self.seed, self.epoch = min(p, len(self.by_class)), k, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, len(self.labels) // (self.p * self.k))

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        classes = np.array(sorted(self.by_class))
        for _ in range(len(self)):
            chosen = rng.choice(classes, size=self.p, replace=False)
            idx = []
            for c in chosen:
                pool = self.by_class[c]
                idx.extend(rng.choice(pool, size=self.k, replace=len(pool) < self.k).tolist())
            yield idx


def caption_targets(ds: Any, idx: np.ndarray, text_encoder: Any, captions: str
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Caption embeddings of the trials ``idx`` and, for label captions, the class ones."""
    if captions == "label":
        class_emb = text_encoder.encode([ds.label_caption(k) for k in range(ds.n_classes)]).float()
        return class_emb[torch.as_tensor(ds.labels[idx])], class_emb
    caps = [ds.caption(int(i)) for i in idx]
    return text_encoder.encode(caps).float(), None


def load_free_captions(path: str | Path) -> dict[str, str]:
    """Free captions: JSON ``{stim_id: caption}`` or TSV lines ``stim_id<TAB>caption``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file {path} does not exist; expected JSON {{stim_id: caption}} or TSV")
    text = path.read_text()
    if path.suffix == ".json":
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a JSON object {{stim_id: caption}}, got a {type(d).__name__}")
        return {str(k): str(v) for k, v in d.items()}
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            if "\t" not in line:
                raise ValueError(f"{path}:{n}: expected 'stim_id<TAB>caption', found no tab in {line[:40]!r}")
            k, v = line.split("\t", 1)
            out[k.strip()] = v.strip()
    return out


def images_tensor(ds: Any, idx: np.ndarray, size: int) -> torch.Tensor:
    """Seen images of trials ``idx`` as float ``[n, 3, size, size]`` in [0, 1]."""
    imgs = ds.images(idx, size)
    return torch.as_tensor(imgs).permute(0, 3, 1, 2).float() / 255.0


class StimulusSubset:
    """A stimulus set restricted to some stimulus ids (e.g. the training split's images);
    everything else (``image``, ``label``, ``caption``, ``image_at``...) is the full set's."""

    def __init__(self, stimuli: Any, stim_ids: Sequence[str]) -> None:
        missing = [s for s in stim_ids if s not in stimuli]
        if missing:
            raise ValueError(
                f"{len(missing)} stimulus ids are not in the {type(stimuli).__name__} "
                f"(e.g. {missing[0]!r}); expected ids of that set"
            )
        if not stim_ids:
            raise ValueError("an empty stimulus subset: expected at least one stimulus id")
        self._stimuli = stimuli
        self.stim_ids = list(stim_ids)

    def __contains__(self, stim_id: object) -> bool:
        return stim_id in set(self.stim_ids)

    def __len__(self) -> int:
        return len(self.stim_ids)

    def __getattr__(self, name: str) -> Any:  # only called for what the subset lacks
        return getattr(self._stimuli, name)


def split_stimuli(stimuli: Any, stim_ids: Sequence[str], split: str, what: str) -> StimulusSubset:
    """The images of one split that ``stimuli`` can draw, for training ``what``.

    Raises ``ValueError`` when the split's images are not in the stimulus set (e.g. a
    data set of photographs and the demo refiner, which draws the procedural demo set)."""
    ids = sorted({str(s) for s in stim_ids})
    known = [s for s in ids if s in stimuli]
    if not known:
        raise ValueError(
            f"the {what} trains on the {type(stimuli).__name__}'s images, but none of the "
            f"{len(ids)} images of the {split!r} split are in it (e.g. {ids[:1]}); reference a "
            f"pretrained {what} instead ([{what}] pretrained = BUNDLE) or train on demo-set data"
        )
    return StimulusSubset(stimuli, known)
