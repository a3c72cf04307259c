from __future__ import annotations

import subprocess
import sys

import pytest

from bci_app.cli import build_parser
from bci_app.config import load_config


def test_every_contract_command_parses():
    p = build_parser()
    assert p.parse_args(["demo", "--headless", "--trials", "5", "--out", "x"]).trials == 5
    assert p.parse_args(["live", "--source", "lsl:Amp", "--record", "r"]).source == "lsl:Amp"
    assert p.parse_args(["replay", "s.fif", "--speed", "2"]).speed == 2.0
    assert p.parse_args(["present", "--demo-set", "--order", "block"]).order == "block"
    assert p.parse_args(["simulate", "--out", "a.fif", "--design", "block"]).design == "block"
    assert p.parse_args(["train", "--data", "synthetic:10", "--out", "b"]).stages.startswith("encoder")
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
