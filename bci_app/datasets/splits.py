"""Train/val/test splits *by image*: no image is in two splits, for any subject."""

from __future__ import annotations

import numpy as np


def split_by_image(
    stim_ids: list[str],
    subjects: np.ndarray | None = None,
    test_frac: float = 0.2,
    val_frac: float = 0.1,
    seed: int = 0,
    test_images: set[str] | None = None,
) -> dict[str, np.ndarray]:
    """Train/val/test trial indices with every image in exactly one split.

    ``test_images`` fixes the test images (e.g. a data set's own test set); otherwise
    ``test_frac`` of the images are drawn. ``val_frac`` of the *remaining* (training)
    images are held out for validation. Subjects are pooled: an image is in the same
    split for every subject, so no image is seen in training by any subject and tested.
    """
    ids = np.asarray(stim_ids)
    uniq = np.array(sorted(set(stim_ids)))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(uniq))
    if test_images is None:
        n_test = int(round(test_frac * len(uniq)))
        test_set = set(uniq[perm[:n_test]])
        rest = uniq[perm[n_test:]]
    else:
        test_set = set(test_images)
        rest = np.array([u for u in uniq[perm] if u not in test_set])
    n_val = int(round(val_frac * len(rest))) if len(rest) > 1 else 0
    val_set = set(rest[:n_val])
    is_test = np.array([s in test_set for s in ids], dtype=bool)
    is_val = np.array([s in val_set for s in ids], dtype=bool)
    return {
        "train": np.nonzero(~is_test & ~is_val)[0],
        "val": np.nonzero(is_val)[0],
        "test": np.nonzero(is_test)[0],
    }


def check_split_disjoint(stim_ids: list[str], splits: dict[str, np.ndarray], where: str) -> None:
    """ValueError when an image has trials in two splits (any pair: train, val, test...).

    Validation selects the model, so an image in validation and test leaks as much as one
    in train and test. Repeats of an image inside one split are fine. ``where`` names the
    data (a spec, a bundle) in the message.
    """
    names = list(splits)
    images = {k: {stim_ids[i] for i in np.asarray(splits[k], dtype=np.int64)} for k in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = images[a] & images[b]
            if both:
                raise ValueError(
                    f"{where}: {len(both)} image(s) are in both the {a} and the {b} split "
                    f"(e.g. {sorted(both)[:3]}); expected splits by image"
                )
