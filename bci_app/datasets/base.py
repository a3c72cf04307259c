"""The data set every loader returns: (EEG window, seen image) pairs with their labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.preprocessing import PreprocessingSpec
from bci_app.stimuli import read_image  # noqa: F401 - the loaders' image reader

IMAGE_EXTS = (".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG")


def find_image(folder: Path, name: str) -> Path | None:
    """``folder/name.<ext>`` for the first of :data:`IMAGE_EXTS` that exists, else None."""
    for ext in IMAGE_EXTS:
        p = folder / f"{name}{ext}"
        if p.is_file():
            return p
    return None


@dataclass
class EEGImageDataset:
    """Trials of EEG windows with the image each one was recorded for.

    ``X`` is float32 ``[N, C, T]`` (filtered as ``spec`` says, not yet normalised);
    ``splits`` holds ``train``/``val``/``test`` trial indices split by image; trials
    left out while loading are counted in ``skipped``.
    """

    X: np.ndarray  # float32 [N, C, T]
    labels: np.ndarray  # int64 [N]
    stim_ids: list[str]
    subjects: np.ndarray  # int64 [N]
    class_names: list[str]
    spec: PreprocessingSpec
    image_loader: Callable[[str], np.ndarray] | None = None
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    source: str = ""
    captions_by_id: dict[str, str] | None = None  # free captions (stim id -> text)
    # attributes shared between classes (e.g. {"shape": [...], "colour": [...]}, one value
    # index per class), when the stimulus set defines them; None otherwise
    class_attributes: dict[str, list[int]] | None = None
    # per-trial object layout ``[N, 3]`` (x, y, size as fractions of the image side) when
    # the stimulus set knows it (the demo set); None otherwise
    layout: np.ndarray | None = None
    # a recording's lost data: {"discontinuities", "samples_lost", "seconds_lost"}
    # (bci_app.preprocessing.epochs.lost_summary); None when it has none
    gaps: dict[str, float] | None = None
    # marker-to-light delays when the trials were re-timed to a photodiode (--photodiode):
    # bci_app.preprocessing.photodiode.photodiode_summary; None otherwise
    photodiode: dict[str, Any] | None = None
    # classes the data set itself keeps out of training, for the zero-shot protocol
    # (THINGS-EEG2: its test concepts); None when it defines none
    zero_shot_classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def label_caption(self, label: int) -> str:
        """The label caption of class ``label``: ``"an image of a <class>"``."""
        return f"an image of a {self.class_names[int(label)]}"

    def caption(self, i: int) -> str:
        """Free caption of trial ``i`` when given, else its label caption."""
        if self.captions_by_id is not None:
            sid = self.stim_ids[i]
            if sid not in self.captions_by_id:
                raise KeyError(f"no free caption for stimulus {sid!r}")
            return self.captions_by_id[sid]
        return self.label_caption(self.labels[i])

    def image(self, i: int, size: int | None = None) -> np.ndarray:
        """Seen image of trial ``i``, uint8 ``[H, W, 3]`` (resized to ``size`` if given)."""
        if self.image_loader is None:
            raise RuntimeError(
                f"data set {self.source!r} has no images; pass --images DIR (the folder of "
                "the stimulus images)"
            )
        img = self.image_loader(self.stim_ids[i])
        if size is not None and img.shape[:2] != (size, size):
            from PIL import Image

            img = np.asarray(
                Image.fromarray(img).convert("RGB").resize((size, size), Image.BILINEAR)
            )
        return img

    def images(self, idx: Sequence[int] | np.ndarray, size: int | None = None) -> np.ndarray:
        """Seen images of trials ``idx``, stacked ``[n, H, W, 3]``."""
        return np.stack([self.image(int(i), size) for i in idx])

    def summary(self) -> dict[str, Any]:
        """Source, sizes, split sizes, skipped counts and subjects (for logs and bundles)."""
        return {
            "source": self.source,
            "n": len(self),
            "n_classes": self.n_classes,
            "shape": list(self.X.shape),
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "skipped": dict(self.skipped),
            "subjects": sorted({int(s) for s in self.subjects}),
            **({"gaps": dict(self.gaps)} if self.gaps else {}),
            **({"photodiode": dict(self.photodiode)} if self.photodiode else {}),
        }
