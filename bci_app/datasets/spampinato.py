"""Spampinato EEG-ImageNet: ``torch.load`` of ``eeg_*.pth`` (+ the block splits file).

``{"dataset": [{"eeg": FloatTensor[128, L], "label", "image", "subject"}, ...],
"labels": [wnid, ...], "images": [name, ...]}``; 1 kHz, the papers keep samples 20:460 of
trials with 450 <= L <= 600. Known flaw: block design (Li et al., TPAMI 2020).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bci_app.datasets.base import EEGImageDataset, find_image, read_image
from bci_app.datasets.splits import split_by_image
from bci_app.preprocessing import PreprocessingSpec


def load_spampinato(
    eeg_path: str | Path,
    splits_path: str | Path | None = None,
    images_dir: str | Path | None = None,
    split: int = 0,
    subject: int | None = None,
    start: int = 20,
    stop: int = 460,
    min_len: int = 450,
    max_len: int = 600,
    split_seed: int = 0,
    test_frac: float = 0.2,
    val_frac: float = 0.1,
) -> EEGImageDataset:
    """Spampinato EEG-ImageNet (``torch.load`` of ``eeg_*.pth`` and, optionally, the splits).

    Keeps trials with ``min_len <= L <= max_len`` and samples ``start:stop``; images are
    ``images_dir/<wnid>/<image name>.JPEG``. With a splits file, split ``split`` gives
    train/val/test (indices into ``dataset``); without one, images are split here.
    """
    import torch

    eeg_path = Path(eeg_path)
    expected = ("{'dataset': [{'eeg': FloatTensor[128, L], 'label': int, 'image': int, "
                "'subject': int}, ...], 'labels': [wnid, ...], 'images': [name, ...]}")
    if not eeg_path.is_file():
        raise FileNotFoundError(f"{eeg_path} does not exist; expected a Spampinato EEG file {expected}")
    try:
        data = torch.load(eeg_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{eeg_path} could not be read with torch.load ({e}); expected {expected}") from None
    if not isinstance(data, dict) or not {"dataset", "labels", "images"} <= set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{eeg_path}: found keys {found}; expected {expected}")
    wnids, names, entries = list(data["labels"]), list(data["images"]), data["dataset"]
    skipped: dict[str, int] = {}
    X, labels, img_idx, subjects, orig = [], [], [], [], []
    n_ch = None
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not {"eeg", "label", "image", "subject"} <= set(e):
            found = sorted(e) if isinstance(e, dict) else type(e).__name__
            raise ValueError(f"{eeg_path}: dataset[{i}] has keys {found}; expected {expected}")
        eeg = e["eeg"]
        if not hasattr(eeg, "shape") or len(eeg.shape) != 2:
            raise ValueError(
                f"{eeg_path}: dataset[{i}]['eeg'] has shape {getattr(eeg, 'shape', None)}; "
                "expected [channels, L]"
            )
        if n_ch is None:
            n_ch = int(eeg.shape[0])
        elif eeg.shape[0] != n_ch:
            raise ValueError(
                f"{eeg_path}: dataset[{i}]['eeg'] has {eeg.shape[0]} channels, earlier trials {n_ch}"
            )
        lab, im = int(e["label"]), int(e["image"])
        if not 0 <= lab < len(wnids) or not 0 <= im < len(names):
            raise ValueError(
                f"{eeg_path}: dataset[{i}] label {lab} / image {im} out of range "
                f"({len(wnids)} labels, {len(names)} images)"
            )
        if subject is not None and int(e["subject"]) != subject:
            skipped["other_subject"] = skipped.get("other_subject", 0) + 1
            continue
        L = int(eeg.shape[1])
        if not min_len <= L <= max_len or L < stop:
            skipped["length_out_of_range"] = skipped.get("length_out_of_range", 0) + 1
            continue
        X.append(np.asarray(eeg[:, start:stop], dtype=np.float32))
        labels.append(lab)
        img_idx.append(im)
        subjects.append(int(e["subject"]))
        orig.append(i)
    if not X:
        raise ValueError(f"{eeg_path}: no trial left after filtering (skipped: {skipped})")
    stim_ids = [str(names[i]) for i in img_idx]
    orig_to_pos = {o: p for p, o in enumerate(orig)}
    if splits_path is not None:
        splits = _read_spampinato_splits(Path(splits_path), split, orig_to_pos, skipped)
    else:
        splits = split_by_image(stim_ids, np.asarray(subjects), test_frac, val_frac, split_seed)
    loader = None
    if images_dir is not None:
        root = Path(images_dir)
        missing = []
        paths: dict[str, Path] = {}
        for sid, lab in zip(stim_ids, labels, strict=True):
            if sid in paths:
                continue
            wnid = str(wnids[lab])
            p = find_image(root / wnid, sid) or find_image(root / wnid, sid.split("/")[-1])
            if p is None:
                missing.append(f"{wnid}/{sid}")
            else:
                paths[sid] = p
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image(s) of {eeg_path} missing under {root} (e.g. {missing[:3]}); "
                "expected <images>/<wnid>/<image name>.JPEG"
            )
        loader = lambda sid: read_image(paths[sid])  # noqa: E731
    spec = PreprocessingSpec(
        sfreq=1000.0, ch_names=[f"EEG{i:03d}" for i in range(n_ch)],
        tmin=start / 1000.0, tmax=stop / 1000.0, l_freq=None, h_freq=None, notch=None,
    )
    return EEGImageDataset(
        X=np.stack(X), labels=np.asarray(labels, dtype=np.int64), stim_ids=stim_ids,
        subjects=np.asarray(subjects, dtype=np.int64), class_names=[str(w) for w in wnids],
        spec=spec, image_loader=loader, splits=splits, skipped=skipped,
    )


def _read_spampinato_splits(path: Path, split: int, orig_to_pos: dict[int, int],
                            skipped: dict[str, int]) -> dict[str, np.ndarray]:
    import torch

    expected = "{'splits': [{'train': [idx], 'val': [idx], 'test': [idx]}, ...]}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected a Spampinato splits file {expected}")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} could not be read with torch.load ({e}); expected {expected}") from None
    if not isinstance(d, dict) or "splits" not in d:
        found = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"{path}: found keys {found}; expected {expected}")
    if not 0 <= split < len(d["splits"]):
        raise ValueError(f"{path}: split {split} requested, the file has {len(d['splits'])}")
    s = d["splits"][split]
    if not isinstance(s, dict) or not {"train", "val", "test"} <= set(s):
        raise ValueError(f"{path}: splits[{split}] has keys {sorted(s) if isinstance(s, dict) else s!r}; expected {expected}")
    out = {}
    dropped = 0
    for name in ("train", "val", "test"):
        idx = [int(i) for i in s[name]]
        kept = [orig_to_pos[i] for i in idx if i in orig_to_pos]
        dropped += len(idx) - len(kept)
        out[name] = np.asarray(kept, dtype=np.int64)
    if dropped:
        skipped["split_index_filtered"] = dropped
    return out
