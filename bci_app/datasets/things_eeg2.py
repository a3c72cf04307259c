"""THINGS-EEG2 (Gifford et al. 2022) preprocessed data.

``preprocessed_eeg_{training,test}.npy``: a pickled dict with ``preprocessed_eeg_data``
``[images, repetitions, channels, times]``, ``ch_names`` and ``times``; the data set's
own test images are the test split, and its test concepts (none of them a training concept)
the data set's zero-shot classes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.datasets.base import EEGImageDataset, read_image
from bci_app.datasets.splits import split_by_image
from bci_app.preprocessing import PreprocessingSpec

THINGS_FILES = {"train": "preprocessed_eeg_training.npy", "test": "preprocessed_eeg_test.npy"}


def _read_things_file(path: Path) -> dict[str, Any]:
    expected = ("a pickled dict {'preprocessed_eeg_data': [images, repetitions, channels, times], "
                "'ch_names': [...], 'times': [...]}")
    try:
        d = np.load(path, allow_pickle=True)
        d = d.item() if isinstance(d, np.ndarray) and d.dtype == object and d.shape == () else d
    except Exception as e:
        raise ValueError(f"{path} could not be read with numpy.load ({e}); expected {expected}") from None
    if not isinstance(d, dict) or not {"preprocessed_eeg_data", "ch_names", "times"} <= set(d):
        found = sorted(d) if isinstance(d, dict) else f"an array of shape {getattr(d, 'shape', None)}"
        raise ValueError(f"{path}: found {found}; expected {expected}")
    x = np.asarray(d["preprocessed_eeg_data"])
    if x.ndim != 4 or x.shape[2] != len(d["ch_names"]) or x.shape[3] != len(d["times"]):
        raise ValueError(
            f"{path}: preprocessed_eeg_data has shape {x.shape}; expected [images, repetitions, "
            f"{len(d['ch_names'])} channels (len ch_names), {len(d['times'])} times (len times)]"
        )
    return d


def _things_subject_dirs(root: Path) -> list[tuple[int, Path]]:
    if (root / THINGS_FILES["train"]).is_file() or (root / THINGS_FILES["test"]).is_file():
        return [(0, root)]
    subs = []
    for p in sorted(root.glob("sub-*")):
        m = re.match(r"sub-(\d+)$", p.name)
        if m and p.is_dir():
            subs.append((int(m.group(1)), p))
    return subs


def load_things_eeg2(
    root: str | Path,
    images_dir: str | Path | None = None,
    subject: int | None = None,
    average: bool = False,
    tmin: float = 0.0,
    tmax: float = 0.8,
    split_seed: int = 0,
    val_frac: float = 0.1,
) -> EEGImageDataset:
    """THINGS-EEG2 preprocessed data: ``DIR/preprocessed_eeg_{training,test}.npy`` or
    ``DIR/sub-XX/...`` (pooled, or one ``subject``). Every repetition is a trial unless
    ``average``. Classes are the image concepts; the data set's test images are the test
    split; validation images are drawn from the training images. Image names and
    concepts come from ``DIR/image_metadata.npy`` when present (``train_img_files``,
    ``train_img_concepts``, ``test_img_files``, ``test_img_concepts``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"THINGS-EEG2 directory {root} does not exist")
    subs = _things_subject_dirs(root)
    if subject is not None:
        subs = [(s, p) for s, p in subs if s == subject]
    if not subs:
        raise FileNotFoundError(
            f"{root}: no {THINGS_FILES['train']} / {THINGS_FILES['test']} found (directly or in "
            f"sub-XX folders{'' if subject is None else f' for subject {subject}'})"
        )
    meta = None
    meta_path = root / "image_metadata.npy"
    if meta_path.is_file():
        meta = np.load(meta_path, allow_pickle=True).item()
        need = {"train_img_files", "train_img_concepts", "test_img_files", "test_img_concepts"}
        if not isinstance(meta, dict) or not need <= set(meta):
            raise ValueError(f"{meta_path}: expected a pickled dict with keys {sorted(need)}")
    Xs, ids, labs, subj, parts = [], [], [], [], []
    concepts: dict[str, int] = {}
    ch_names = times = None
    for s, folder in subs:
        for part, fname in THINGS_FILES.items():
            path = folder / fname
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist; expected THINGS-EEG2 {fname}")
            d = _read_things_file(path)
            x = np.asarray(d["preprocessed_eeg_data"], dtype=np.float32)
            if ch_names is None:
                ch_names, times = list(d["ch_names"]), np.asarray(d["times"], dtype=float)
            elif list(d["ch_names"]) != ch_names or len(d["times"]) != len(times):
                raise ValueError(f"{path}: channels/times differ from {subs[0][1]}; expected the same montage")
            n_img = x.shape[0]
            if meta is not None:
                files = list(meta[f"{part}_img_files"])
                cons = list(meta[f"{part}_img_concepts"])
                if len(files) != n_img:
                    raise ValueError(f"{meta_path}: {len(files)} {part} images listed, {path} has {n_img}")
            else:
                per = 10 if part == "train" else 1
                files = [f"{part}_{i:05d}" for i in range(n_img)]
                cons = [f"{part}_concept_{i // per:04d}" for i in range(n_img)]
            lab = [concepts.setdefault(str(c), len(concepts)) for c in cons]
            if average:
                x = x.mean(axis=1, keepdims=True)
            reps = x.shape[1]
            Xs.append(x.reshape(n_img * reps, x.shape[2], x.shape[3]))
            for i in range(n_img):
                ids += [f"{part}/{files[i]}"] * reps
                labs += [lab[i]] * reps
                subj += [s] * reps
                parts += [part] * reps
    sfreq = float(round(1.0 / np.median(np.diff(times)))) if len(times) > 1 else 100.0
    sel = np.nonzero((times >= tmin - 1e-9) & (times < tmax - 1e-9))[0]
    X = np.concatenate(Xs)[:, :, sel]
    test_images = {i for i, p in zip(ids, parts, strict=True) if p == "test"}
    splits = split_by_image(ids, None, 0.0, val_frac, split_seed, test_images=test_images)
    class_names = [re.sub(r"^\d+_", "", c).replace("_", " ") for c in concepts]
    # the test concepts are none of the training concepts: the field's zero-shot classes
    test_labels = sorted({lab for lab, p in zip(labs, parts, strict=True) if p == "test"})
    loader = None
    if images_dir is not None:
        img_root = Path(images_dir)
        cons_by_id = {}
        if meta is not None:
            for part in ("train", "test"):
                for f, c in zip(meta[f"{part}_img_files"], meta[f"{part}_img_concepts"], strict=True):
                    cons_by_id[f"{part}/{f}"] = str(c)

        def loader(sid: str) -> np.ndarray:
            part, _, f = sid.partition("/")
            sub = "training_images" if part == "train" else "test_images"
            p = img_root / sub / cons_by_id.get(sid, "") / f
            if not p.is_file():
                raise FileNotFoundError(f"THINGS image {p} missing; expected <images>/{sub}/<concept>/<file>")
            return read_image(p)

    spec = PreprocessingSpec(sfreq=sfreq, ch_names=ch_names, tmin=float(times[sel[0]]),
                             tmax=float(times[sel[0]]) + len(sel) / sfreq,
                             l_freq=None, h_freq=None, notch=None)
    return EEGImageDataset(
        X=np.ascontiguousarray(X), labels=np.asarray(labs, dtype=np.int64), stim_ids=ids,
        subjects=np.asarray(subj, dtype=np.int64), class_names=class_names, spec=spec,
        image_loader=loader, splits=splits, skipped={},
        zero_shot_classes=[class_names[k] for k in test_labels],
    )
