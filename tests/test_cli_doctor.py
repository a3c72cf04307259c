from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bci_app.cli import build_parser
from bci_app.config import load_config
from bci_app.evaluation.pretrained import CLIP_FILES, CLIP_MODEL


def test_every_contract_command_parses():
    p = build_parser()
    assert p.parse_args(["demo", "--headless", "--trials", "5", "--out", "x"]).trials == 5
    assert p.parse_args(["live", "--source", "lsl:Amp", "--record", "r"]).source == "lsl:Amp"
    assert p.parse_args(["replay", "s.fif", "--speed", "2"]).speed == 2.0
    assert p.parse_args(["present", "--demo-set", "--order", "block"]).order == "block"
    assert p.parse_args(["simulate", "--out", "a.fif", "--design", "block"]).design == "block"
    train = p.parse_args(["train", "--data", "synthetic:10", "--out", "b"])
    assert train.data == "synthetic:10" and (train.stages or "encoder").startswith("encoder")  # None: all
    assert p.parse_args(["evaluate", "--bundle", "demo", "--data", "synthetic", "--out", "d"]).topk == 1
    assert p.parse_args(["bench", "--arch", "sd-turbo", "--out", "f.json"]).arch == "sd-turbo"


def test_doctor_reports_lsl_and_torch():
    out = subprocess.run(
        [sys.executable, "-m", "bci_app.cli", "doctor"], capture_output=True, text=True, timeout=120
    )
    assert "liblsl" in out.stdout
    assert "torch" in out.stdout
    assert "pkg_resources" not in out.stderr


def test_config_from_toml_and_unknown_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[epoch]\ntmin = 0.05\n[inference]\nqueue_size = 3\n")
    cfg = load_config(f)
    assert cfg.epoch.tmin == 0.05 and cfg.inference.queue_size == 3
    assert cfg.epoch.n_times == 410
    f.write_text("[epoch]\ntmn = 0.05\n")
    with pytest.raises(ValueError, match="unknown setting 'epoch.tmn'"):
        load_config(f)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_qt_platform_check_runs_in_a_subprocess_and_names_what_is_missing():
    from bci_app.ui.qt_check import QtPlatformCheck, check_qt_platform, package_for

    ok = check_qt_platform(env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert ok.ok and ok.platform == "offscreen"
    # an X display that does not exist: Qt aborts in the child, the parent says why
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    bad = check_qt_platform(env={**env, "DISPLAY": ":4917", "WAYLAND_DISPLAY": ""})
    assert not bad.ok and bad.platform == "xcb" and "xcb" in bad.detail
    assert "Qt cannot" in bad.message()
    # the libraries Qt 6.5+ needs on X11, named with the package that ships them
    assert package_for("libxcb-cursor.so.0") == "libxcb-cursor0"
    assert package_for("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert package_for("libxcb-icccm.so.4") == "libxcb-icccm4"
    msg = QtPlatformCheck(False, "xcb", ["libxcb-cursor.so.0"], "").message()
    assert "libxcb-cursor.so.0" in msg and "apt-get install libxcb-cursor0" in msg


def test_doctor_reports_a_broken_qt_platform():
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    out = subprocess.run([sys.executable, "-m", "bci_app.cli", "doctor"], capture_output=True, text=True,
                         timeout=120, env={**env, "DISPLAY": ":4917"})
    qt = [line for line in out.stdout.splitlines() if " qt " in line]
    assert qt and qt[0].startswith("[--]") and "demo falls back to --headless" in qt[0], out.stdout


def test_demo_falls_back_to_headless_when_qt_cannot_open_a_window(tmp_path, monkeypatch, capsys):
    from bci_app.cli import main

    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setenv("DISPLAY", ":4917")  # no X server there: Qt would abort the process
    out = tmp_path / "out"
    rc = main(["demo", "--trials", "3", "--rate", "4", "--out", str(out)])
    text = capsys.readouterr().out
    assert "Qt cannot" in text and "running headless" in text, text
    assert rc == 0 and (out / "report.json").exists()


def _fake_hf_repo(cache, repo, files):
    snap = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("a" * 40)
    for f in files:
        (snap / f).parent.mkdir(parents=True, exist_ok=True)
        (snap / f).write_bytes(b"{}")
    refs = cache / f"models--{repo.replace('/', '--')}" / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text("a" * 40)


def test_doctor_checks_weights_where_the_commands_look(tmp_path):
    """Inception/AlexNet in --weights-dir or $TORCH_HOME/hub/checkpoints (as evaluate), CLIP and
    SD-Turbo in the Hugging Face cache (as evaluate and the refiner); each row from what it found."""
    hub, torch_home, wdir = tmp_path / "hub", tmp_path / "torch", tmp_path / "weights"
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    (torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").write_bytes(b"x")
    wdir.mkdir()
    (wdir / "inception_v3_google-0cc3c7bd.pth").write_bytes(b"x")
    _fake_hf_repo(hub, CLIP_MODEL, CLIP_FILES)
    _fake_hf_repo(hub, "stabilityai/sd-turbo", ["model_index.json", "unet/config.json"])  # incomplete
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "TORCH_HOME": str(torch_home), "HF_HUB_OFFLINE": "1"}

    def rows(*extra):
        out = subprocess.run([sys.executable, "-m", "bci_app.cli", "doctor", *extra], capture_output=True,
                             text=True, timeout=120, env=env)
        return [line for line in out.stdout.splitlines() if " weights " in line]

    def row(lines, key):
        return next(line for line in lines if key in line)

    lines = rows("--weights-dir", str(wdir))
    assert row(lines, "alexnet").startswith("[ok]") and "alexnet-owt-7be5be79.pth" in row(lines, "alexnet")
    assert row(lines, "inception_v3").startswith("[ok]") and str(wdir) in row(lines, "inception_v3")
    assert row(lines, "openai/clip").startswith("[ok]")
    sd = row(lines, "stabilityai/sd-turbo")
    assert sd.startswith("[--]") and "incomplete" in sd and "unet/diffusion_pytorch_model.safetensors" in sd
    assert row(lines, "madebyollin/taesd").startswith("[--]")
    # without --weights-dir, Inception is looked for (and missed) where evaluate would look
    inception = row(rows(), "inception_v3")
    assert inception.startswith("[--]") and str(torch_home / "hub" / "checkpoints") in inception


def test_doctor_and_evaluate_agree_on_an_incomplete_clip(tmp_path):
    """CLIP with its weights (in the older pytorch_model.bin) but without the processor's files:
    doctor's row and evaluate's CLIP two-way name the same missing files in the same cache."""
    hub = tmp_path / "hub"
    _fake_hf_repo(hub, CLIP_MODEL, ["config.json", "pytorch_model.bin", "vocab.json"])
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "bci_app.cli", "doctor"], capture_output=True, text=True,
                         timeout=120, env=env)
    row = next(line for line in out.stdout.splitlines() if CLIP_MODEL in line)
    assert row.startswith("[--]") and "missing preprocessor_config.json, merges.txt in" in row, row
    assert str(hub) in row and f"hf download {CLIP_MODEL}" in row
    probe = ("import numpy as np; from bci_app.evaluation.pretrained import clip_two_way; "
             "print(clip_two_way(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8)).reason)")
    reason = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            env=env).stdout
    assert "missing preprocessor_config.json, merges.txt" in reason and str(hub) in reason, reason
