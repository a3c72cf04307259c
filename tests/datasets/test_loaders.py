"""Loaders read files written here in the real Spampinato and THINGS-EEG2 layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bci_app.datasets import load_spec, parse_spec, split_by_image


def write_spampinato(root, lengths=(500, 500, 500, 500, 440, 650, 500, 500), n_ch=4):
    wnids = ["n01", "n02"]
    names = [f"{wnids[i % 2]}_{i}" for i in range(4)]
    g = torch.Generator().manual_seed(0)
    dataset = [{"eeg": torch.randn(n_ch, L, generator=g), "label": i % 2, "image": i % 4, "subject": 1 + i % 2}
               for i, L in enumerate(lengths)]
    torch.save({"dataset": dataset, "labels": wnids, "images": names}, root / "eeg.pth")
    torch.save({"splits": [{"train": [0, 1, 4, 5], "val": [2, 6], "test": [3, 7]}]}, root / "splits.pth")
    for n in names:
        w = n.split("_")[0]
        (root / "img" / w).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((10, 12, 3), 7, np.uint8)).save(root / "img" / w / f"{n}.JPEG")
    return names


def test_spampinato_layout(tmp_path):
    write_spampinato(tmp_path)
    ds = load_spec(f"spampinato:{tmp_path/'eeg.pth'},{tmp_path/'splits.pth'}", images_dir=tmp_path / "img")
    assert ds.X.shape == (6, 4, 440)  # 440 and 650 samples dropped (450 <= L <= 600)
    assert ds.skipped["length_out_of_range"] == 2
    assert ds.skipped["split_index_filtered"] == 2
    assert ds.class_names == ["n01", "n02"]
    assert sorted(ds.splits["train"].tolist() + ds.splits["val"].tolist() + ds.splits["test"].tolist()) == list(range(6))
    assert ds.image(0).shape == (10, 12, 3) and ds.image(0, size=8).shape == (8, 8, 3)
    ds1 = load_spec(f"spampinato:{tmp_path/'eeg.pth'},subject=1")
    assert set(ds1.subjects.tolist()) == {1} and ds1.skipped["other_subject"] == 4


def test_spampinato_malformed(tmp_path):
    torch.save({"data": []}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad.pth: found keys \['data'\]; expected .*'dataset'"):
        load_spec(f"spampinato:{tmp_path/'bad.pth'}")
    torch.save({"dataset": [{"eeg": torch.zeros(4), "label": 0, "image": 0, "subject": 1}],
                "labels": ["n01"], "images": ["a"]}, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"shape.pth: dataset\[0\]\['eeg'\] has shape"):
        load_spec(f"spampinato:{tmp_path/'shape.pth'}")
    names = write_spampinato(tmp_path)
    (tmp_path / "img" / "n01" / f"{names[0]}.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) of .*eeg.pth missing"):
        load_spec(f"spampinato:{tmp_path/'eeg.pth'}", images_dir=tmp_path / "img")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth could not be read"):
        load_spec(f"spampinato:{tmp_path/'junk.pth'}")


def write_things(root, n_train=6, n_test=2, reps=(2, 3), C=3, T=10):
    rng = np.random.default_rng(0)
    times = np.round(np.arange(T) / 10 - 0.2, 3)
    for part, n, r in (("training", n_train, reps[0]), ("test", n_test, reps[1])):
        d = {"preprocessed_eeg_data": rng.standard_normal((n, r, C, T)).astype(np.float32),
             "ch_names": [f"E{i}" for i in range(C)], "times": times}
        np.save(root / f"preprocessed_eeg_{part}.npy", d, allow_pickle=True)


def test_things_eeg2_layout(tmp_path):
    sub = tmp_path / "sub-01"
    sub.mkdir()
    write_things(sub)
    ds = load_spec(f"things-eeg2:{tmp_path}")
    assert ds.X.shape == (6 * 2 + 2 * 3, 3, 8)  # times 0.0..0.7 at 10 Hz
    assert ds.spec.sfreq == 10.0
    test_ids = {ds.stim_ids[i] for i in ds.splits["test"]}
    assert test_ids == {"test/test_00000", "test/test_00001"}
    train_ids = {ds.stim_ids[i] for i in ds.splits["train"]}
    val_ids = {ds.stim_ids[i] for i in ds.splits["val"]}
    assert not train_ids & test_ids and not train_ids & val_ids and all(v.startswith("train/") for v in val_ids)
    avg = load_spec(f"things-eeg2:{tmp_path},average=1")
    assert len(avg) == 8


def test_things_eeg2_malformed(tmp_path):
    write_things(tmp_path)
    d = np.load(tmp_path / "preprocessed_eeg_test.npy", allow_pickle=True).item()
    d["preprocessed_eeg_data"] = d["preprocessed_eeg_data"][:, :, :2]
    np.save(tmp_path / "preprocessed_eeg_test.npy", d, allow_pickle=True)
    with pytest.raises(ValueError, match=r"preprocessed_eeg_test.npy: preprocessed_eeg_data has shape \(2, 3, 2, 10\)"):
        load_spec(f"things-eeg2:{tmp_path}")
    np.save(tmp_path / "preprocessed_eeg_test.npy", {"eeg": 1}, allow_pickle=True)
    with pytest.raises(ValueError, match=r"found \['eeg'\]"):
        load_spec(f"things-eeg2:{tmp_path}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no preprocessed_eeg_training.npy"):
        load_spec(f"things-eeg2:{tmp_path / 'empty'}")


def test_spec_parsing_and_errors():
    assert parse_spec("synthetic:120,seed=3,snr=2") == ("synthetic", ["120"], {"seed": "3", "snr": "2"})
    assert parse_spec("synthetic,seed=3") == ("synthetic", [], {"seed": "3"})
    with pytest.raises(ValueError, match="unknown data spec kind"):
        load_spec("openneuro:ds1")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\]"):
        load_spec("synthetic:5,colour=red")


def test_split_by_image_never_shares_images():
    ids = [f"img{i % 30}" for i in range(120)]
    s = split_by_image(ids, test_frac=0.2, val_frac=0.2, seed=1)
    sets = {k: {ids[i] for i in v} for k, v in s.items()}
    assert not sets["train"] & sets["test"] and not sets["val"] & sets["test"] and not sets["train"] & sets["val"]
    assert sum(len(v) for v in s.values()) == 120


def test_synthetic_and_session(tmp_path):
    from bci_app.simulation import simulate_raw

    ds = load_spec("synthetic:40,seed=5")
    assert ds.X.shape[1:] == (128, 440) and len(ds) == 40 and ds.n_classes == 40
    assert ds.image(0).shape == (64, 64, 3)
    raw = simulate_raw(20, seed=6)
    raw.save(tmp_path / "rec_raw.fif", verbose="error")
    s = load_spec(f"session:{tmp_path}")
    assert len(s) == 20 and s.stim_ids[0] in set(ds.stim_ids) | {s.stim_ids[0]}
    assert s.caption(0).startswith("an image of a ")


def test_synthetic_any_cap():
    ds = load_spec("synthetic:30,seed=2,montage=biosemi64,sfreq=512")
    assert ds.X.shape[:2] == (30, 64) and ds.spec.sfreq == 512.0
    assert ds.X.shape[2] == ds.spec.n_times


def test_session_of_own_images_gets_folder_classes(tmp_path):
    """Non-demo stimulus ids resolve to --images DIR; classes are the image sub-folders."""
    import mne

    from bci_app.simulation import simulate_raw

    raw = simulate_raw(6, seed=3, montage="biosemi32", sfreq=250.0)
    ids = ["cat_01", "dog_01", "cat_02", "dog_02", "cat_01", "owl_09"]
    raw.set_annotations(mne.Annotations(raw.annotations.onset, 0.0, [f"stim/{s}" for s in ids]))
    raw.save(tmp_path / "own_raw.fif", verbose="error")
    img = tmp_path / "img"
    for i, s in enumerate(ids[:4]):
        (img / f"{s[:3]}s").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((9, 9, 3), i, np.uint8)).save(img / f"{s[:3]}s" / f"{s}.png")
    with pytest.raises(FileNotFoundError, match=r"no image for stimulus 'owl_09' under .*img"):
        load_spec(f"session:{tmp_path / 'own_raw.fif'}", images_dir=img)
    (img / "owls").mkdir()
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(img / "owls" / "owl_09.png")
    ds = load_spec(f"session:{tmp_path / 'own_raw.fif'}", images_dir=img)
    assert ds.class_names == ["cats", "dogs", "owls"]
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 2] and ds.stim_ids == ids
    assert ds.image(1).shape == (9, 9, 3) and ds.image(1)[0, 0, 0] == 1
    # without --images the trials are not demo stimuli: a clear error, nothing to train on
    with pytest.raises(ValueError, match=r"no usable trial .*not_demo_stimulus.*--images DIR"):
        load_spec(f"session:{tmp_path / 'own_raw.fif'}")


def test_synthetic_spec_names_the_generative_model():
    from bci_app.datasets.spec import SPEC_HELP

    assert parse_spec("synthetic:120,model=components,classes=20") == (
        "synthetic", ["120"], {"model": "components", "classes": "20"})
    assert "model=attributes|components" in SPEC_HELP and "classes=K" in SPEC_HELP
    ds = load_spec("synthetic:24,seed=1,model=components,montage=biosemi16,sfreq=128")
    assert ds.X.shape[:2] == (24, 16) and ds.spec.sfreq == 128.0
    with pytest.raises(ValueError, match="model must be one of"):
        load_spec("synthetic:5,model=gabor")
