"""Every file the app opens, damaged or truncated, fails with an error that names the file and
says what it should have been (not a library's "invalid header length").

Each test writes the real file first (a bundle with every component, recordings in FIF,
XDF, BrainVision and EDF, a TOML settings file, an event map, images), checks that the
intact copy reads, then damages a copy the way disks, crashes and interrupted copies do:
cut in half, or its first bytes overwritten."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bci_app.file_errors import DamagedFileError


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def overwrite_start(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(b"\xff" * 8 + data[8:])
    return path


DAMAGES = {"truncated": truncate, "overwritten": overwrite_start}


def assert_names(err: pytest.ExceptionInfo, path: Path, *expected: str) -> None:
    msg = str(err.value)
    assert str(path) in msg, msg
    for word in expected:
        assert word in msg, msg


# ----------------------------------------------------------------------------- bundles
@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A bundle with every component a Reconstructor loads (encoder, generator, semantic
    head, a diffusers-format refiner, the image classifier) and a linear baseline."""
    from bci_app.models.baseline import LinearBaseline
    from bci_app.models.bundle import save_bundle
    from bci_app.models.encoders import BinnedLinearEncoder
    from bci_app.models.image_classifier import ImageClassifier
    from bci_app.models.refiners import DiffusersImg2ImgRefiner
    from bci_app.models.saliency_gan import SaliencyGenerator
    from bci_app.models.semantic import SemanticHead
    from bci_app.preprocessing import PreprocessingSpec
    from tests.models.test_refiners import get_dummy_components

    root = tmp_path_factory.mktemp("bundle") / "bundle"
    torch.manual_seed(0)
    spec = PreprocessingSpec(sfreq=250.0, ch_names=[f"E{i}" for i in range(4)])
    comps = {
        "encoder": BinnedLinearEncoder(4, 8, 110, sfreq=250.0),
        "generator": SaliencyGenerator(z_dim=4, cond_dim=8, resolution=16, base_channels=8),
        "semantic": SemanticHead(8, seq_len=77, embed_dim=32, hidden=8),
    }
    cfg = {"spec": spec.to_dict(), "classes": ["a", "b"], "n_times": 110,
           "refiner": {"path": "refiner"}, "classifier": {"path": "classifier"}}
    save_bundle(root, cfg, comps)
    DiffusersImg2ImgRefiner.from_components(*get_dummy_components()).save(root / "refiner")
    ImageClassifier(n_classes=2, resolution=16, width=8).save(root / "classifier")
    rng = np.random.default_rng(0)
    LinearBaseline(sfreq=250.0).fit(rng.standard_normal((20, 4, 110)), np.arange(20) % 2).save(root)
    return root


def _load_part(directory: Path, rel: str) -> None:
    from bci_app.models.baseline import LinearBaseline
    from bci_app.models.reconstructor import Reconstructor

    if rel == "baseline.safetensors":
        LinearBaseline.load(directory)
    else:
        Reconstructor.from_bundle(directory, device="cpu", dtype="float32")


BUNDLE_FILES = [
    "config.json", "encoder.safetensors", "generator.safetensors", "semantic.safetensors",
    "baseline.safetensors", "classifier/classifier.json", "classifier/classifier.safetensors",
    "refiner/refiner_config.json", "refiner/model_index.json",
    "refiner/scheduler/scheduler_config.json", "refiner/unet/config.json",
    "refiner/unet/diffusion_pytorch_model.safetensors", "refiner/vae/config.json",
    "refiner/vae/diffusion_pytorch_model.safetensors",
]


def test_the_intact_bundle_loads(bundle):
    for rel in ("config.json", "baseline.safetensors"):
        _load_part(bundle, rel)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("rel", BUNDLE_FILES)
def test_a_damaged_bundle_file_is_named(bundle, tmp_path, rel, damage, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    target = DAMAGES[damage](copy / rel)
    with pytest.raises(DamagedFileError) as err:
        _load_part(copy, rel)
    # the file itself, or (diffusers components) its folder with the library naming the file
    assert_names(err, target, "cannot be read", "expected", "truncated, damaged")


# ----------------------------------------------------------------------------- recordings
@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    """One recording in each format the app reads, written by the tests."""
    import mne

    from tests.datasets.raw_writers import write_brainvision, write_edf
    from tests.datasets.xdf_writer import XDFStream, write_xdf

    root = tmp_path_factory.mktemp("recordings")
    rng = np.random.default_rng(1)
    names, sfreq = ["Fz", "Cz", "Pz", "Oz"], 250.0
    x = rng.standard_normal((4, 2500)) * 1e-5
    raw = mne.io.RawArray(x, mne.create_info(names, sfreq, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([1.0, 2.0], [0.0, 0.0], ["stim/a", "stim/b"]))
    fif = root / "session_raw.fif"
    raw.save(fif, verbose="error")
    chans = [{"label": n, "type": "EEG", "unit": "microvolts"} for n in names]
    xdf = write_xdf(root / "rec.xdf", [
        XDFStream("amp", "EEG", sfreq, (x.T * 1e6).astype(np.float32), np.arange(2500) / sfreq, chans),
        XDFStream("mk", "Markers", 0.0, ["stim/a", "stim/b"], np.array([1.0, 2.0])),
    ])
    vhdr = write_brainvision(root / "rec.vhdr", x, names, sfreq, [(250, 1), (500, 2)])
    edf = write_edf(root / "rec.edf", x, names, sfreq)
    return {"fif": fif, "xdf": xdf, "vhdr": vhdr, "edf": edf}


def _copy_recording(src: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in src.parent.glob(src.stem + ".*"):  # BrainVision: .vhdr + .vmrk + .eeg
        shutil.copy(f, dest / f.name)
    return dest / src.name


def test_the_intact_recordings_read(recordings):
    from bci_app.acquisition.recorder import read_session
    from bci_app.datasets import read_recording

    for path in recordings.values():
        assert read_recording(path).n_times == 2500
    assert read_session(recordings["fif"]).n_times == 2500


@pytest.mark.parametrize("keep", [0.5, 0.03])
def test_a_truncated_fif_is_named_by_replay_and_the_loaders(recordings, tmp_path, keep):
    from bci_app.acquisition.recorder import read_session
    from bci_app.datasets import read_recording

    fif = truncate(_copy_recording(recordings["fif"], tmp_path / "s"), keep)
    for read in (read_session, read_recording):  # replay's reader, train/evaluate's reader
        with pytest.raises(DamagedFileError) as err:
            read(fif)
        assert_names(err, fif, "expected a .fif recording", "truncated")


def test_replay_of_a_truncated_fif_says_which_file(recordings, tmp_path, capsys):
    from bci_app.cli import main

    fif = truncate(_copy_recording(recordings["fif"], tmp_path / "s"))
    assert main(["replay", str(fif), "--headless", "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"bci-app replay: error: {fif}: cannot be read (" in err
    assert "buffer size" in err or "reshape" in err  # the library's own words, after the name


@pytest.mark.parametrize("fmt,part,damage", [
    ("xdf", "rec.xdf", truncate),            # pyxdf reads the first half and says nothing
    ("xdf", "rec.xdf", lambda p: truncate(p, 0.999)),  # only the last footer cut
    ("edf", "rec.edf", truncate),            # MNE reads the records that are there
    ("edf", "rec.edf", lambda p: truncate(p, 0.05)),   # the header cut
    ("vhdr", "rec.eeg", lambda p: p.write_bytes(p.read_bytes()[:-3]) and p),  # ends mid-sample
    ("vhdr", "rec.vhdr", truncate),          # the header cut
])
def test_a_truncated_recording_is_named(recordings, tmp_path, fmt, part, damage):
    from bci_app.datasets import read_recording

    path = _copy_recording(recordings[fmt], tmp_path / "s")
    target = damage(path.parent / part)
    with pytest.raises(DamagedFileError) as err:
        read_recording(path)
    assert_names(err, target, "expected")


# ----------------------------------------------------------------------------- configs, event maps, images
def test_a_damaged_toml_settings_file_is_named(tmp_path):
    from bci_app.config import load_config, load_train_config

    f = tmp_path / "lab.toml"
    f.write_text('[inference]\ndevice = "cpu"\nqueue_size = 4\n\n[encoder]\nepochs = 3\n')
    assert load_config(f).inference.queue_size == 4
    truncate(f, 0.3)  # cut inside the string '"cpu"'
    for load in (load_config, load_train_config):
        with pytest.raises(DamagedFileError) as err:
            load(f)
        assert_names(err, f, "expected a TOML settings file", "TOMLDecodeError")
    overwrite_start(f)
    with pytest.raises(DamagedFileError) as err:
        load_config(f)
    assert_names(err, f, "TOML")


def test_a_damaged_event_map_is_named(tmp_path):
    from bci_app.stimuli import EventMap

    f = tmp_path / "events.tsv"
    f.write_text("marker\tstimulus\n12\tc00_i00\nface_1\tc01_i00\n", encoding="utf-8")
    assert len(EventMap.load(f)) == 2
    f.write_bytes(f.read_bytes()[:-9])  # cut after 'face_1': the line lost its stimulus
    with pytest.raises(ValueError, match=rf"event map {f}, line 3: 'face_1' has no marker or no stimulus"):
        EventMap.load(f)
    overwrite_start(f)  # not UTF-8 text any more
    with pytest.raises(DamagedFileError) as err:
        EventMap.load(f)
    assert_names(err, f, "expected a UTF-8 tab-separated event map", "UnicodeDecodeError")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_image_of_an_image_folder_is_named(tmp_path, suffix, damage):
    from PIL import Image

    from bci_app.datasets.base import read_image
    from bci_app.stimuli import ImageFolderSet

    (tmp_path / "dogs").mkdir()
    img = (np.random.default_rng(2).random((32, 32, 3)) * 255).astype(np.uint8)
    path = tmp_path / "dogs" / f"img_001{suffix}"
    Image.fromarray(img).save(path)
    stimuli = ImageFolderSet(tmp_path)
    assert stimuli.image("dogs/img_001").shape == (32, 32, 3)
    DAMAGES[damage](path)
    for read in (lambda: stimuli.image("dogs/img_001", 16), lambda: read_image(path)):
        with pytest.raises(DamagedFileError) as err:
            read()
        assert_names(err, path, "expected an image file")
