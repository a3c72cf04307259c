"""``bci-app live --source lsl:NAME`` driven by mne-lsl's PlayerLSL (a third-party peer in its
own process): type ``eeg``, more channels than the bundle in another order, twice its rate."""

from __future__ import annotations

import json

import mne
import numpy as np
import pytest

from bci_app.cli import main
from bci_app.models.bundle import demo_bundle_path
from bci_app.preprocessing import PreprocessingSpec
from tests.acquisition.lsl_helpers import player_process


@pytest.mark.slow
def test_live_from_player_lsl_with_extra_channels_at_twice_the_rate(tmp_path, stream_id, capsys):
    name, sid = stream_id
    config = json.loads((demo_bundle_path() / "config.json").read_text())
    spec = PreprocessingSpec.from_dict(config["spec"])
    rng = np.random.default_rng(0)
    sf, first, n_markers = 2 * spec.sfreq, 15.0, 6  # first marker after the bundle has loaded
    n = int((first + n_markers * 0.8 + 1.5) * sf)
    names = list(spec.ch_names) + ["HEOG", "VEOG", "STI 014"]
    types = ["eeg"] * len(spec.ch_names) + ["eog", "eog", "stim"]
    order = rng.permutation(len(names))
    data = rng.standard_normal((len(names), n)) * 1e-5
    raw = mne.io.RawArray(
        data[order], mne.create_info([names[i] for i in order], sf, [types[i] for i in order]),
        verbose="error",
    )  # fmt: skip
    onsets = first + 0.8 * np.arange(n_markers)
    raw.set_annotations(mne.Annotations(onsets, 0, [f"stim/c{i}_i{i}" for i in range(n_markers)]))
    fname = tmp_path / "amp_raw.fif"
    raw.save(fname, verbose="error")
    out = tmp_path / "out"
    with player_process(fname, name, sid, "string"):
        rc = main(
            ["live", "--source", f"lsl:{name}", "--markers", f"{name}-annotations", "--headless",
             "--trials", "3", "--out", str(out)]
        )  # fmt: skip
    text = capsys.readouterr()
    assert rc == 0, text.err
    report = json.loads((out / "report.json").read_text())
    assert report["trials"] == 3 and report["reconstructed"] == 3, report
    assert report["samples_lost"] == 0 and not report["rejected"]
