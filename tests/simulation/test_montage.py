"""Any cap: the virtual subject on other MNE montages and rates; the default is unchanged."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from bci_app.cli import main
from bci_app.simulation import BackgroundNoise, SubjectModel, resolve_montage, simulate_raw


def test_default_simulation_is_unchanged():
    """The shipped demo bundle was trained on this subject: 128 channels at 1 kHz.

    Reference values were printed by the code before montages and rates were added
    (commit 6466ede): ``simulate_raw(12, seed=7, design="block")`` and friends.
    """
    raw = simulate_raw(12, seed=7, design="block")
    d = raw.get_data()
    assert d.shape == (128, 8300) and raw.info["sfreq"] == 1000.0
    idx = [(0, 0), (5, 1234), (63, 2500), (127, d.shape[1] - 1), (90, 4000), (31, 777)]
    ref = [1.770457272423418e-05, 3.12008458749427e-05, -2.1108750918398983e-07,
           2.6669438699256516e-06, -8.685668417774735e-06, 2.0278967764160375e-05]
    np.testing.assert_allclose([d[i] for i in idx], ref, rtol=1e-9)
    np.testing.assert_allclose([d.sum(), np.abs(d).sum()], [3.403776147839916, 16.51060391800398],
                               rtol=1e-9)
    assert list(raw.annotations.description[:3]) == ["stim/c04_i32", "stim/c00_i47", "stim/c28_i00"]
    ev = SubjectModel().evoked("c07_i23")
    np.testing.assert_allclose([ev[10, 150], np.abs(ev).sum()],
                               [-1.8554415400228615e-07, 0.054947346295280974], rtol=1e-9)
    bg = BackgroundNoise(128, 1000.0, seed=5).generate(3000)
    np.testing.assert_allclose([bg[3, 2999], np.abs(bg).sum()],
                               [-1.5950215586218336e-05, 4.753824222824942], rtol=1e-9)
    # naming the default explicitly gives the same samples
    same = simulate_raw(12, seed=7, design="block", montage="biosemi128", sfreq=1000.0)
    np.testing.assert_array_equal(same.get_data(), d)


@pytest.mark.parametrize(("montage", "sfreq", "n_ch"), [
    ("biosemi64", 512.0, 64),
    ("standard_1020:Fz,Cz,Pz,O1,Oz,O2", 250.0, 6),
    ("easycap-M1", 500.0, 74),
])
def test_other_caps_and_rates(montage, sfreq, n_ch):
    raw = simulate_raw(20, seed=1, montage=montage, sfreq=sfreq, on=0.5)
    d = raw.get_data()
    assert len(raw.ch_names) == n_ch and raw.info["sfreq"] == sfreq
    assert raw.get_montage() is not None and np.isfinite(d).all()
    std = d.std(axis=1)
    assert 2e-6 < np.median(std) < 1e-4  # EEG-sized background in volts at any rate
    # evoked responses are there: the noise-free average over trials is not flat
    clean = simulate_raw(20, seed=1, montage=montage, sfreq=sfreq, noise_scale=0.0)
    onset = int(round(clean.annotations.onset[0] * sfreq))
    peak = np.abs(clean.get_data()[:, onset : onset + int(0.5 * sfreq)]).max()
    assert 1e-6 < peak < 1e-4


def test_visual_response_is_occipital_on_any_cap():
    """Topographies follow the electrode positions: posterior > frontal on a 10-20 subset."""
    montage = "standard_1020:Fp1,Fp2,Fz,O1,Oz,O2"
    name, chs = resolve_montage(montage)
    m = SubjectModel(ch_names=chs, montage=name, sfreq=250.0)
    ev = np.mean([np.abs(m.evoked(s)).max(axis=1) for s in m.stimuli.stim_ids[::50]], axis=0)
    assert ev[3:].mean() > 2 * ev[:3].mean()


def test_montage_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"unknown montage 'biosemi63'; expected an MNE standard"):
        resolve_montage("biosemi63")
    with pytest.raises(ValueError, match=r"channels \['Xx9'\] are not in the standard_1020 montage"):
        resolve_montage("standard_1020:Fz,Xx9")
    assert resolve_montage("standard_1020:fz,CZ")[1] == ["Fz", "Cz"]


def test_simulate_command_takes_montage_and_sfreq(tmp_path, capsys):
    out = tmp_path / "cap_eeg.fif"
    assert main(["simulate", "--out", str(out), "--trials", "12", "--montage", "biosemi64",
                 "--sfreq", "512"]) == 0
    assert "64 channels (biosemi64) at 512 Hz" in capsys.readouterr().out
    raw = mne.io.read_raw_fif(out, verbose="error")
    assert len(raw.ch_names) == 64 and raw.info["sfreq"] == 512.0 and len(raw.annotations) == 12
    assert main(["simulate", "--out", str(out), "--montage", "nope64"]) == 2
    assert "unknown montage 'nope64'" in capsys.readouterr().err
