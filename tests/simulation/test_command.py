"""``bci-app simulate`` writes a FIF session readable by MNE."""

from __future__ import annotations

import subprocess
import sys

import mne
import numpy as np

from bci_app.cli import main
from bci_app.simulation import standard_montage_128


def test_simulate_writes_readable_fif(tmp_path, capsys):
    out = tmp_path / "sub" / "session_eeg.fif"
    rc = main(["simulate", "--out", str(out), "--trials", "25", "--seed", "3", "--design", "block"])
    assert rc == 0
    assert "25 trials" in capsys.readouterr().out
    raw = mne.io.read_raw_fif(out, preload=True, verbose="error")
    assert raw.ch_names == standard_montage_128()
    assert raw.info["sfreq"] == 1000.0
    assert len(raw.annotations) == 25
    assert all(d.startswith("stim/") for d in raw.annotations.description)
    np.testing.assert_allclose(np.diff(raw.annotations.onset), 0.5, atol=1e-9)
    assert raw.get_montage() is not None
    assert np.isfinite(raw.get_data()).all()
    # overwrite works
    assert main(["simulate", "--out", str(out), "--trials", "5"]) == 0
    assert len(mne.io.read_raw_fif(out, verbose="error").annotations) == 5


def test_simulate_rejects_bad_out(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "session.edf"), "--trials", "2"]) == 2
    assert "not a FIF file name" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["simulate", "--out", str(blocker / "x.fif"), "--trials", "2"]) == 2
    assert "--out" in capsys.readouterr().err


def test_simulate_console_script(tmp_path):
    out = tmp_path / "s_raw.fif"
    proc = subprocess.run(
        [sys.executable, "-m", "bci_app.cli", "simulate", "--out", str(out), "--trials", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(mne.io.read_raw_fif(out, verbose="error").annotations) == 3
