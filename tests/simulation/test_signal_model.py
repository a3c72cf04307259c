"""The virtual subject's signal model: montage, background noise, evoked responses, raw sessions."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from scipy import signal

from bci_app.simulation import BackgroundNoise, SubjectModel, simulate_raw, standard_montage_128
from bci_app.stimuli import DemoStimulusSet, StimulusParams


def test_montage_is_biosemi128():
    names = standard_montage_128()
    assert names == mne.channels.make_standard_montage("biosemi128").ch_names
    assert len(names) == 128 and len(set(names)) == 128


# ---------------------------------------------------------------- background
def test_background_is_continuous_across_chunkings():
    one = BackgroundNoise(128, 1000.0, seed=3, drift=True).generate(5000)
    b = BackgroundNoise(128, 1000.0, seed=3, drift=True)
    pieces = np.concatenate([b.generate(n) for n in (1, 999, 1234, 2766)], axis=1)
    np.testing.assert_allclose(pieces, one, rtol=0, atol=1e-15)
    other = BackgroundNoise(128, 1000.0, seed=4, drift=True).generate(5000)
    assert not np.allclose(other, one)


def test_background_magnitude_and_spectrum():
    fs = 1000.0
    x = BackgroundNoise(128, fs, seed=1).generate(60_000)
    rms_uv = x.std(axis=1) * 1e6
    assert 5 < np.median(rms_uv) < 60, (
        f"background RMS {np.median(rms_uv):.1f} uV is not tens of uV"
    )
    f, p = signal.welch(x, fs=fs, nperseg=4000, axis=1)
    p = p.mean(axis=0)
    band = lambda lo, hi: p[(f >= lo) & (f < hi)].mean()  # noqa: E731
    assert band(2, 5) > 5 * band(20, 30), "no 1/f fall-off"
    assert p[np.argmin(np.abs(f - 50))] > 10 * band(44, 48), "no 50 Hz line noise"
    assert band(9, 11) > 2 * band(6, 8) or band(9, 11) > 2 * band(12, 14), "no alpha peak"


def test_background_topography_alpha_occipital_blinks_frontal():
    fs = 1000.0
    names = standard_montage_128()
    x = BackgroundNoise(128, fs, seed=2, line_freq=None).generate(120_000)
    occ, front = names.index("A23"), names.index("C17")  # Oz-ish, Fpz-ish
    alpha = signal.sosfiltfilt(
        signal.butter(4, [8, 12], btype="band", fs=fs, output="sos"), x, axis=1
    )
    assert alpha[occ].std() > 1.5 * alpha[front].std()
    slow = signal.sosfiltfilt(
        signal.butter(4, [1, 4], btype="band", fs=fs, output="sos"), x, axis=1
    )
    assert np.abs(slow[front]).max() > 2 * np.abs(slow[occ]).max(), "no frontal blinks"


# ---------------------------------------------------------------- evoked
@pytest.fixture(scope="module")
def model():
    return SubjectModel(DemoStimulusSet(), snr=1.0, seed=0)


def test_evoked_shape_timing_and_determinism(model):
    ev = model.evoked("c05_i10")
    assert ev.shape == (128, 800)
    np.testing.assert_array_equal(ev, SubjectModel(DemoStimulusSet(), seed=0).evoked("c05_i10"))
    peak = np.abs(ev).max()
    assert 1e-6 < peak < 100e-6, f"evoked peak {peak * 1e6:.1f} uV is not microvolts"
    gfp = ev.std(axis=0)
    assert gfp[:40].max() < 0.05 * gfp.max(), "response before 40 ms"
    assert gfp[600:].max() < 0.1 * gfp.max(), "response after 600 ms"
    assert gfp[60:500].max() == gfp.max()


def test_snr_scales_evoked():
    a = SubjectModel(snr=1.0).evoked("c01_i01")
    b = SubjectModel(snr=2.5).evoked("c01_i01")
    np.testing.assert_allclose(b, 2.5 * a)
    with pytest.raises(ValueError, match="snr"):
        SubjectModel(snr=-1)


def test_each_class_has_its_own_signature(model):
    stimuli = model.stimuli
    means = np.stack(
        [
            np.mean([model.evoked(stimuli.make_id(c, i)) for i in range(10)], axis=0).ravel()
            for c in range(40)
        ]
    )
    means -= means.mean(axis=0)  # remove what all classes share
    r = np.corrcoef(means)
    off_diag = r[~np.eye(40, dtype=bool)]
    assert off_diag.max() < 0.9, f"two classes nearly identical (r={off_diag.max():.2f})"


def _with(stimuli: DemoStimulusSet, stim_id: str, **changes) -> DemoStimulusSet:
    """A copy of the set in which one image's parameters are changed (same class)."""
    import dataclasses

    s = DemoStimulusSet(stimuli.seed, stimuli.n_per_class, stimuli.size)
    p: StimulusParams = s._params[stim_id]
    s._params[stim_id] = dataclasses.replace(p, **changes)
    return s


def test_position_lateralises_and_size_scales(model):
    names = model.ch_names
    right = [names.index(c) for c in ("B7", "B8", "A28", "A29")]  # right occipito-parietal (x > 0)
    left = [names.index(c) for c in ("D31", "D32", "A15", "A16")]
    sid = "c00_i00"
    base = model.stimuli
    ev_l = SubjectModel(_with(base, sid, x=0.2)).components(sid)
    ev_r = SubjectModel(_with(base, sid, x=0.8)).components(sid)
    # the generic visual component (index 0) is contralateral
    topo_l, topo_r = ev_l[0][:, 0], ev_r[0][:, 0]
    assert topo_l[right].mean() > topo_l[left].mean()
    assert topo_r[left].mean() > topo_r[right].mean()
    small = SubjectModel(_with(base, sid, size=0.17)).components(sid)[1][0]
    large = SubjectModel(_with(base, sid, size=0.33)).components(sid)[1][0]
    assert np.abs(large).max() > 1.3 * np.abs(small).max()
    assert np.argmin(large) < np.argmin(small), "larger objects should respond earlier"


# ---------------------------------------------------------------- raw sessions
def test_simulate_raw_structure():
    raw = simulate_raw(30, seed=7, on=0.5)
    assert isinstance(raw, mne.io.BaseRaw)
    assert raw.info["sfreq"] == 1000.0 and len(raw.ch_names) == 128
    assert raw.ch_names == standard_montage_128()
    assert set(raw.get_channel_types()) == {"eeg"}
    assert raw.get_montage() is not None
    ann = raw.annotations
    assert len(ann) == 30
    assert all(d.startswith("stim/") for d in ann.description)
    assert all(d.removeprefix("stim/") in DemoStimulusSet() for d in ann.description)
    np.testing.assert_allclose(np.diff(ann.onset), 0.5)
    np.testing.assert_allclose(ann.duration, 0.5)
    assert raw.n_times >= int((ann.onset[-1] + 0.8) * 1000)
    data = raw.get_data()
    assert np.isfinite(data).all()
    assert 5e-6 < np.median(data.std(axis=1)) < 100e-6


def test_simulate_raw_is_deterministic_and_validates():
    a = simulate_raw(5, seed=1).get_data()
    b = simulate_raw(5, seed=1).get_data()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, simulate_raw(5, seed=2).get_data())
    with pytest.raises(ValueError, match="design"):
        simulate_raw(5, design="interleaved")
    with pytest.raises(ValueError, match="n_trials"):
        simulate_raw(0)


def test_evoked_is_added_at_onsets():
    # with the background scaled away, the data are exactly the trial-varied evoked responses
    raw = simulate_raw(6, seed=0, noise_scale=0.0, line_freq=None)
    data = raw.get_data()
    model = SubjectModel()
    for onset, desc in zip(raw.annotations.onset, raw.annotations.description, strict=True):
        k0 = int(round(onset * 1000))
        seg = data[:, k0 : k0 + 500]
        ev = model.evoked(desc.removeprefix("stim/"))[:, :500]
        r = np.corrcoef(seg.ravel(), ev.ravel())[0, 1]
        assert r > 0.5, f"evoked response of {desc} not found at its onset (r={r:.2f})"


def test_block_design_orders_classes_in_blocks():
    raw = simulate_raw(400, seed=0, design="block", on=0.05)  # 10 images per class block
    labels = [
        DemoStimulusSet.parse_id(d.removeprefix("stim/"))[0] for d in raw.annotations.description
    ]
    changes = sum(a != b for a, b in zip(labels, labels[1:], strict=False))
    assert changes == 39
    assert len(set(labels)) == 40
