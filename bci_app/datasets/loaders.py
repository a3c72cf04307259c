"""Data sets of (EEG window, seen image) pairs, selected by a data SPEC string.

    synthetic[:N][,seed=S][,design=rapid|block][,snr=X]     the virtual subject
    spampinato:EEG.pth[,SPLITS.pth][,split=I][,subject=K]    Spampinato EEG-ImageNet
    things-eeg2:DIR[,subject=K][,average=1]                  THINGS-EEG2 preprocessed
    session:DIR_OR_FIF                                       a session recorded by the app

:func:`load_spec` returns an :class:`EEGImageDataset`: ``X`` float32 ``[N, C, T]``
(filtered as its ``spec`` says, not yet normalised), ``labels``, ``stim_ids``,
``subjects``, ``class_names``, an image loader, and ``splits`` (``train``/``val``/``test``
index arrays, split *by image*: no image in both train and test; validation comes from
the training images only). Trials left out are counted in ``skipped`` and logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.preprocessing import PreprocessingSpec
from bci_app.stimuli import DemoStimulusSet, MarkerMapper

log = logging.getLogger(__name__)

SPEC_HELP = (
    "expected one of: synthetic[:N][,seed=S][,design=rapid|block][,snr=X], "
    "spampinato:EEG.pth[,SPLITS.pth], things-eeg2:DIR, session:DIR_OR_FIF"
)
IMAGE_EXTS = (".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG")


@dataclass
class EEGImageDataset:
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

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def label_caption(self, label: int) -> str:
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

            img = np.asarray(Image.fromarray(img).convert("RGB").resize((size, size), Image.BILINEAR))
        return img

    def images(self, idx, size: int | None = None) -> np.ndarray:
        return np.stack([self.image(int(i), size) for i in idx])

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n": len(self),
            "n_classes": self.n_classes,
            "shape": list(self.X.shape),
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "skipped": dict(self.skipped),
            "subjects": sorted({int(s) for s in self.subjects}),
        }


# ----------------------------------------------------------------------------- splits
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
    train = {stim_ids[i] for i in splits.get("train", [])}
    test = {stim_ids[i] for i in splits.get("test", [])}
    both = train & test
    if both:
        raise ValueError(
            f"{where}: {len(both)} image(s) are in both the train and the test split "
            f"(e.g. {sorted(both)[:3]}); expected splits by image"
        )


# ----------------------------------------------------------------------------- spec parsing
def parse_spec(spec: str) -> tuple[str, list[str], dict[str, str]]:
    """``"kind:a,b,k=v"`` -> ``(kind, [a, b], {k: v})``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty data spec; {SPEC_HELP}")
    kind, _, rest = spec.strip().partition(":")
    if kind.startswith("synthetic") and "," in kind:  # "synthetic,seed=1"
        kind, _, more = kind.partition(",")
        rest = f",{more}" + (f",{rest}" if rest else "")
    pos, kw = [], {}
    for part in [p for p in rest.split(",") if p != ""]:
        if re.match(r"^[a-z_]+=", part):
            k, _, v = part.partition("=")
            kw[k] = v
        else:
            pos.append(part)
    return kind, pos, kw


def load_spec(
    spec: str,
    images_dir: str | Path | None = None,
    preprocessing: PreprocessingSpec | None = None,
    split_seed: int = 0,
    test_frac: float = 0.2,
    val_frac: float = 0.1,
) -> EEGImageDataset:
    """Load the data set named by ``spec`` (see the module docstring)."""
    kind, pos, kw = parse_spec(spec)
    if kind == "synthetic":
        ds = load_synthetic(
            n_trials=int(pos[0]) if pos else 2000,
            seed=int(kw.pop("seed", 0)),
            design=kw.pop("design", "rapid"),
            snr=float(kw.pop("snr", 1.0)),
            preprocessing=preprocessing,
        )
        _no_left(kw, spec)
        ds.splits = split_by_image(ds.stim_ids, ds.subjects, test_frac, val_frac, split_seed)
    elif kind == "spampinato":
        if not pos:
            raise ValueError(f"data spec {spec!r}: spampinato needs a file; {SPEC_HELP}")
        ds = load_spampinato(
            pos[0], pos[1] if len(pos) > 1 else None, images_dir=images_dir,
            split=int(kw.pop("split", 0)),
            subject=int(kw["subject"]) if "subject" in kw else None,
            start=int(kw.pop("start", 20)), stop=int(kw.pop("stop", 460)),
            split_seed=split_seed, test_frac=test_frac, val_frac=val_frac,
        )
        kw.pop("subject", None)
        _no_left(kw, spec)
    elif kind == "things-eeg2":
        if not pos:
            raise ValueError(f"data spec {spec!r}: things-eeg2 needs a directory; {SPEC_HELP}")
        ds = load_things_eeg2(
            pos[0], images_dir=images_dir,
            subject=int(kw["subject"]) if "subject" in kw else None,
            average=bool(int(kw.get("average", 0))),
            split_seed=split_seed, val_frac=val_frac,
        )
        kw.pop("subject", None)
        kw.pop("average", None)
        _no_left(kw, spec)
    elif kind == "session":
        if not pos:
            raise ValueError(f"data spec {spec!r}: session needs a directory or .fif file; {SPEC_HELP}")
        ds = load_session(pos[0], images_dir=images_dir, preprocessing=preprocessing)
        _no_left(kw, spec)
        ds.splits = split_by_image(ds.stim_ids, ds.subjects, test_frac, val_frac, split_seed)
    else:
        raise ValueError(f"unknown data spec kind {kind!r} in {spec!r}; {SPEC_HELP}")
    ds.source = spec
    check_split_disjoint(ds.stim_ids, ds.splits, spec)
    if ds.skipped:
        log.warning("%s: skipped trials %s", spec, ds.skipped)
    return ds


def _no_left(kw: dict[str, str], spec: str) -> None:
    if kw:
        raise ValueError(f"data spec {spec!r}: unknown option(s) {sorted(kw)}; {SPEC_HELP}")


# ----------------------------------------------------------------------------- synthetic
def default_spec(ch_names: list[str], sfreq: float = 1000.0) -> PreprocessingSpec:
    from bci_app.config import EpochConfig

    return PreprocessingSpec.from_epoch_config(EpochConfig(sfreq=sfreq, n_channels=len(ch_names)), ch_names)


def _epoch_to_dataset(epochs, stimuli: DemoStimulusSet, spec: PreprocessingSpec,
                      images_dir: str | Path | None, skipped: dict[str, int]) -> EEGImageDataset:
    for reason, n in epochs.reject_counts().items():
        skipped[reason] = skipped.get(reason, 0) + n
    if epochs.n_unknown:
        skipped["unknown_marker"] = skipped.get("unknown_marker", 0) + int(epochs.n_unknown)
    good = epochs.good()
    keep = [i for i, s in enumerate(good.stim_ids) if s in stimuli]
    if len(keep) < len(good.stim_ids):
        if images_dir is None:
            skipped["not_demo_stimulus"] = len(good.stim_ids) - len(keep)
        else:  # other stimuli: images from the folder, one class per stimulus folder
            keep = list(range(len(good.stim_ids)))
    ids = [good.stim_ids[i] for i in keep]
    labels = np.array([stimuli.label(s) if s in stimuli else -1 for s in ids], dtype=np.int64)
    loader = _session_image_loader(stimuli, images_dir)
    known = all(s in stimuli for s in ids)
    return EEGImageDataset(
        X=np.ascontiguousarray(good.X[keep], dtype=np.float32),
        labels=labels,
        stim_ids=ids,
        subjects=np.zeros(len(ids), dtype=np.int64),
        class_names=stimuli.class_names(),
        class_attributes=stimuli.class_attributes() if hasattr(stimuli, "class_attributes") else None,
        layout=stimuli.layout(ids) if known and hasattr(stimuli, "layout") else None,
        spec=spec,
        image_loader=loader,
        skipped=skipped,
    )


def _session_image_loader(stimuli: DemoStimulusSet, images_dir: str | Path | None):
    folder = Path(images_dir) if images_dir else None

    def load(stim_id: str) -> np.ndarray:
        if stim_id in stimuli:
            return np.array(stimuli.image(stim_id))
        if folder is None:
            raise FileNotFoundError(f"stimulus {stim_id!r} is not a demo stimulus; pass --images DIR")
        for ext in IMAGE_EXTS:
            hits = list(folder.rglob(f"{stim_id}{ext}"))
            if hits:
                return _read_image(hits[0])
        raise FileNotFoundError(f"no image for stimulus {stim_id!r} under {folder} (tried {IMAGE_EXTS})")

    return load


def load_synthetic(n_trials: int = 2000, seed: int = 0, design: str = "rapid", snr: float = 1.0,
                   preprocessing: PreprocessingSpec | None = None) -> EEGImageDataset:
    """Trials of the virtual subject (``bci_app.simulation.simulate_raw``), epoched with the
    live window arithmetic (``bci_app.preprocessing.epoch_raw``)."""
    from bci_app.preprocessing import epoch_raw
    from bci_app.simulation import simulate_raw

    if n_trials < 1:
        raise ValueError(f"synthetic data needs at least 1 trial, got {n_trials}")
    stimuli = DemoStimulusSet()
    raw = simulate_raw(n_trials, seed=seed, design=design, snr=snr)
    spec = preprocessing or default_spec(list(raw.ch_names), float(raw.info["sfreq"]))
    epochs = epoch_raw(raw, spec, MarkerMapper())
    return _epoch_to_dataset(epochs, stimuli, spec, None, {})


def load_session(path: str | Path, images_dir: str | Path | None = None,
                 preprocessing: PreprocessingSpec | None = None) -> EEGImageDataset:
    """A session recorded (or simulated) by the app: FIF + ``stim/<id>`` annotations."""
    import mne

    from bci_app.preprocessing import epoch_raw

    path = Path(path)
    if path.is_dir():
        fifs = sorted(path.glob("*.fif")) + sorted(path.glob("*.fif.gz"))
        if not fifs:
            raise FileNotFoundError(f"session directory {path} holds no .fif file; expected a recording")
        path = fifs[0]
    if not path.is_file():
        raise FileNotFoundError(f"session {path} does not exist; expected a directory or a .fif file")
    raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
    spec = preprocessing or default_spec(list(raw.ch_names), float(raw.info["sfreq"]))
    epochs = epoch_raw(raw, spec, MarkerMapper())
    return _epoch_to_dataset(epochs, DemoStimulusSet(), spec, images_dir, {})


# ----------------------------------------------------------------------------- Spampinato
def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _find_image(folder: Path, name: str) -> Path | None:
    for ext in IMAGE_EXTS:
        p = folder / f"{name}{ext}"
        if p.is_file():
            return p
    return None


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
            p = _find_image(root / wnid, sid) or _find_image(root / wnid, sid.split("/")[-1])
            if p is None:
                missing.append(f"{wnid}/{sid}")
            else:
                paths[sid] = p
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image(s) of {eeg_path} missing under {root} (e.g. {missing[:3]}); "
                "expected <images>/<wnid>/<image name>.JPEG"
            )
        loader = lambda sid: _read_image(paths[sid])  # noqa: E731
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


# ----------------------------------------------------------------------------- THINGS-EEG2
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
            return _read_image(p)

    spec = PreprocessingSpec(sfreq=sfreq, ch_names=ch_names, tmin=float(times[sel[0]]),
                             tmax=float(times[sel[0]]) + len(sel) / sfreq,
                             l_freq=None, h_freq=None, notch=None)
    return EEGImageDataset(
        X=np.ascontiguousarray(X), labels=np.asarray(labs, dtype=np.int64), stim_ids=ids,
        subjects=np.asarray(subj, dtype=np.int64), class_names=class_names, spec=spec,
        image_loader=loader, splits=splits, skipped={},
    )
