"""The second generative structure: shared ERP components mixed per class (model=components)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import signal

from bci_app.cli import main
from bci_app.simulation import (
    ComponentsBackground,
    ComponentsModel,
    SubjectModel,
    montage_channels,
    resolve_classes,
    resolve_model_name,
    simulate_raw,
    spread_classes,
)
from bci_app.stimuli import DemoStimulusSet

STIM = DemoStimulusSet()


@pytest.fixture(scope="module")
def small():
    return ComponentsModel(seed=0, sfreq=250.0, montage="biosemi32")


# ---------------------------------------------------------------- structure
def test_evoked_shape_units_and_timing(small):
    ev = small.evoked("c05_i10")
    assert ev.shape == (32, 200) and small.ch_names == montage_channels("biosemi32")
    peak = np.abs(ev).max()
    assert 1e-6 < peak < 100e-6, f"evoked peak {peak * 1e6:.1f} uV is not microvolts"
    gfp = ev.std(axis=0)
    t = small.times
    assert gfp[t < 0.04].max() < 0.02 * gfp.max(), "response before 40 ms"
    assert gfp[t > 0.75].max() < 0.05 * gfp.max(), "response does not end inside 0.8 s"
    assert 0.08 <= small.latencies.min() and small.latencies.max() <= 0.40
    # snr scales it
    np.testing.assert_allclose(
        ComponentsModel(snr=2.0, sfreq=250.0, montage="biosemi32").evoked("c05_i10"), 2 * ev
    )


def test_class_responses_are_mixtures_of_the_shared_components(small):
    from bci_app.simulation.components import DEFAULT_AMPLITUDE_UV

    K = small.n_components
    tcs = small.time_courses()
    assert tcs.shape == (K, small.n_times) and small.topographies.shape == (32, K)
    for sid in ("c00_i00", "c17_i03", "c39_i49"):
        # the maps and waves are shared; only the weights depend on the stimulus
        w = small.weights(sid)
        expected = small.snr * DEFAULT_AMPLITUDE_UV * 1e-6 * small.topographies @ (w[:, None] * tcs)
        np.testing.assert_allclose(small.evoked(sid), expected, rtol=1e-12)
    # every response of every image lies in the span of the K shared components
    F = np.stack([small.evoked(STIM.make_id(c, i)).ravel() for c in range(40) for i in range(3)])
    sv = np.linalg.svd(F, compute_uv=False)
    assert sv[K - 1] > 0.05 * sv[0] and sv[K] < 1e-9 * sv[0], sv[: K + 2] / sv[0]
    # the images of a class are close; the classes differ
    a, b = small.evoked("c07_i01"), small.evoked("c07_i02")
    c = small.evoked("c08_i01")
    assert np.linalg.norm(a - b) < 0.5 * np.linalg.norm(a - c)
    # no image perturbation: all images of a class are the same
    flat = ComponentsModel(sfreq=250.0, montage="biosemi32", image_jitter=0.0)
    np.testing.assert_array_equal(flat.evoked("c07_i01"), flat.evoked("c07_i02"))


def _shared_vs_other(class_evoked: list[np.ndarray]) -> float:
    """Mean correlation of class pairs sharing a shape or a colour minus that of the others."""
    F = np.stack([e.ravel() for e in class_evoked])
    F = F - F.mean(axis=0)
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    R = F @ F.T
    shared, other = [], []
    for a, b in itertools.combinations(range(40), 2):
        same = a // 5 == b // 5 or a % 5 == b % 5  # label = shape * 5 + colour
        (shared if same else other).append(R[a, b])
    return float(np.mean(shared) - np.mean(other))


def test_responses_are_not_determined_by_shape_or_colour():
    """Two classes sharing a shape or a colour are no more alike than any two classes
    (while the attributes model makes them clearly more alike)."""
    def class_means(model):
        return [np.mean([model.evoked(STIM.make_id(c, i)) for i in range(6)], axis=0)
                for c in range(40)]

    for seed in (0, 1, 2):
        comp = _shared_vs_other(class_means(ComponentsModel(seed=seed, sfreq=250.0,
                                                            montage="biosemi32")))
        assert comp < 0.1, f"components model, seed {seed}: shared-attribute pairs +{comp:.2f}"
    attr = _shared_vs_other(class_means(SubjectModel(seed=0, sfreq=250.0, ch_names=montage_channels(
        "biosemi32"), montage="biosemi32")))
    assert attr > 0.2, f"the attributes model should share attributes (+{attr:.2f})"


def test_trials_jitter_in_latency_and_amplitude(small):
    rng = np.random.default_rng(0)
    trials = np.stack([small.trial("c03_i04", rng) for _ in range(200)])
    ev = small.evoked("c03_i04")
    assert not np.allclose(trials[0], trials[1])
    # not a rigid copy: the per-trial responses are not all scaled copies of the mean
    f = trials.reshape(200, -1)
    corr = f @ ev.ravel() / (np.linalg.norm(f, axis=1) * np.linalg.norm(ev))
    assert corr.min() < 0.95 and corr.mean() > 0.6
    # the average is close to the mean response (jitter blurs it a little)
    mean = trials.mean(axis=0)
    assert np.corrcoef(mean.ravel(), ev.ravel())[0, 1] > 0.95
    # same generator state, same trial
    np.testing.assert_array_equal(small.trial("c03_i04", np.random.default_rng(1)),
                                  small.trial("c03_i04", np.random.default_rng(1)))


# ---------------------------------------------------------------- background
def test_background_bad_channel_blinks_drift_line():
    fs = 512.0
    names = montage_channels("biosemi64")
    bg = ComponentsBackground(names, fs, seed=3, montage="biosemi64")
    x = bg.generate(int(90 * fs))
    assert len(bg.bad) == 1 and bg.bad_names == [names[bg.bad[0]]]
    band = signal.sosfiltfilt(signal.butter(4, [1, 40], btype="band", fs=fs, output="sos"), x,
                              axis=1)
    sd = band.std(axis=1)
    good = np.delete(sd, bg.bad)
    assert sd[bg.bad[0]] > 3 * np.median(good), "no very noisy channel"
    assert 5e-6 < np.median(good) < 40e-6
    # blinks: frontal, not occipital (there are no EOG channels)
    slow = signal.sosfiltfilt(signal.butter(4, [1, 4], btype="band", fs=fs, output="sos"), x,
                              axis=1)
    fp, oz = names.index("Fpz"), names.index("Oz")
    assert bg.bad[0] not in (fp, oz)  # (seed 3's bad channel is elsewhere)
    assert np.abs(slow[fp]).max() > 2 * np.abs(slow[oz]).max(), "no frontal blinks"
    f, p = signal.welch(np.delete(x, bg.bad, axis=0), fs=fs, nperseg=int(20 * fs), axis=1)
    p = p.mean(axis=0)
    mean_in = lambda lo, hi: p[(f >= lo) & (f < hi)].mean()  # noqa: E731
    assert mean_in(0.05, 0.5) > 10 * mean_in(2, 5), "no slow drift / 1/f"
    assert p[np.argmin(np.abs(f - 50))] > 10 * mean_in(44, 48), "no line noise"
    # spatially correlated: neighbouring channels co-vary
    r = np.corrcoef(band[[i for i in range(64) if i not in bg.bad]])
    assert np.median(r[np.triu_indices_from(r, 1)]) > 0.1


def test_background_is_continuous_and_seeded():
    names = montage_channels("biosemi32")
    one = ComponentsBackground(names, 250.0, seed=4, montage="biosemi32").generate(3000)
    b = ComponentsBackground(names, 250.0, seed=4, montage="biosemi32")
    pieces = np.concatenate([b.generate(n) for n in (1, 999, 700, 1300)], axis=1)
    np.testing.assert_allclose(pieces, one, rtol=0, atol=1e-15)
    other = ComponentsBackground(names, 250.0, seed=5, montage="biosemi32")
    assert not np.allclose(other.generate(3000), one)
    assert ComponentsBackground(names, 250.0, seed=4, montage="biosemi32", bad_channels=0).bad == []
    with pytest.raises(ValueError, match="bad_channels"):
        ComponentsBackground(names[:4], 250.0, bad_channels=3, montage="biosemi32")


# ---------------------------------------------------------------- sessions
@pytest.mark.parametrize(("montage", "sfreq", "n_ch"), [("biosemi32", 250.0, 32),
                                                         ("biosemi64", 512.0, 64)])
def test_sessions_on_any_cap_and_rate(montage, sfreq, n_ch):
    raw = simulate_raw(30, seed=1, model="components", montage=montage, sfreq=sfreq)
    d = raw.get_data()
    assert len(raw.ch_names) == n_ch and raw.info["sfreq"] == sfreq
    assert set(raw.get_channel_types()) == {"eeg"}  # blinks without EOG channels
    assert raw.get_montage() is not None and np.isfinite(d).all()
    assert 2e-6 < np.median(d.std(axis=1)) < 1e-4
    assert "model=components" in raw.info["description"]
    assert raw.info["bads"] == []  # the bad channel is for the user to find
    clean = simulate_raw(30, seed=1, model="components", montage=montage, sfreq=sfreq,
                         noise_scale=0.0)
    onset = int(round(clean.annotations.onset[0] * sfreq))
    peak = np.abs(clean.get_data()[:, onset: onset + int(0.5 * sfreq)]).max()
    assert 1e-6 < peak < 1e-4


def test_sessions_are_deterministic_and_default_is_unchanged():
    kw = {"model": "components", "montage": "biosemi32", "sfreq": 250.0}
    a = simulate_raw(15, seed=2, **kw)
    np.testing.assert_array_equal(a.get_data(), simulate_raw(15, seed=2, **kw).get_data())
    assert not np.allclose(a.get_data(), simulate_raw(15, seed=3, **kw).get_data())
    # another subject, same session seed: same schedule, other responses
    b = simulate_raw(15, seed=2, subject_seed=1, noise_scale=0.0, **kw)
    c = simulate_raw(15, seed=2, noise_scale=0.0, **kw)
    assert list(b.annotations.description) == list(c.annotations.description)
    assert not np.allclose(b.get_data(), c.get_data())
    # the components session is not the attributes session
    attr = simulate_raw(15, seed=2, montage="biosemi32", sfreq=250.0)
    assert not np.allclose(attr.get_data(), a.get_data())
    # default model: bit-identical to naming the attributes model (or its alias)
    ref = simulate_raw(12, seed=7, design="block").get_data()
    for name in ("attributes", "subject", "Attributes"):
        np.testing.assert_array_equal(
            simulate_raw(12, seed=7, design="block", model=name).get_data(), ref
        )
    with pytest.raises(ValueError, match=r"model must be one of \('attributes', 'components'\)"):
        simulate_raw(5, model="gabor")
    assert resolve_model_name("subject") == "attributes"


def test_class_subsets_spread_over_shapes_and_colours():
    twenty = spread_classes(20)
    assert len(twenty) == 20 == len(set(twenty)) and twenty == spread_classes(20)
    shapes = np.bincount([c // 5 for c in twenty], minlength=8)
    colours = np.bincount([c % 5 for c in twenty], minlength=5)
    assert shapes.min() >= 2 and shapes.max() <= 3 and set(colours) == {4}
    assert spread_classes(40) == list(range(40))
    assert resolve_classes(None) is None and resolve_classes([3, 1, 3]) == [1, 3]
    with pytest.raises(ValueError, match=r"1\.\.40"):
        spread_classes(0)
    with pytest.raises(ValueError, match="demo class labels"):
        resolve_classes([40])
    raw = simulate_raw(60, seed=0, model="components", montage="biosemi32", sfreq=250.0,
                       classes=10)
    labels = {STIM.label(d.removeprefix("stim/")) for d in raw.annotations.description}
    assert labels == set(spread_classes(10))
    # the attributes model takes a subset as well
    raw = simulate_raw(30, seed=0, montage="biosemi32", sfreq=250.0, classes=[2, 9])
    assert {STIM.label(d.removeprefix("stim/")) for d in raw.annotations.description} == {2, 9}


# ---------------------------------------------------------------- spec and command
def test_synthetic_spec_with_components_model():
    from bci_app.datasets.spec import load_spec

    ds = load_spec("synthetic:80,seed=1,model=components,montage=biosemi32,sfreq=250,classes=20")
    assert ds.X.shape[:2] == (80, 32) and ds.spec.sfreq == 250.0
    assert set(np.unique(ds.labels)) <= set(spread_classes(20))
    assert ds.n_classes == 40 and ds.image(0).shape == (64, 64, 3)  # demo ids and images
    with pytest.raises(ValueError, match="model must be one of"):
        load_spec("synthetic:5,model=gabor")
    with pytest.raises(ValueError, match="classes='x' is not an integer"):
        load_spec("synthetic:5,classes=x")


def test_simulate_command_takes_model(tmp_path, capsys):
    import mne

    out = tmp_path / "comp_eeg.fif"
    assert main(["simulate", "--out", str(out), "--trials", "20", "--model", "components",
                 "--montage", "biosemi32", "--sfreq", "250", "--classes", "8"]) == 0
    assert "model components" in capsys.readouterr().out
    raw = mne.io.read_raw_fif(out, verbose="error")
    assert len(raw.ch_names) == 32 and "model=components" in raw.info["description"]
    labels = {STIM.label(d.removeprefix("stim/")) for d in raw.annotations.description}
    assert labels <= set(spread_classes(8))
    with pytest.raises(SystemExit):
        main(["simulate", "--out", str(out), "--model", "gabor"])
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "(default attributes)" in " ".join(capsys.readouterr().out.split())


def test_live_virtual_subject_takes_model():
    from bci_app.acquisition.virtual_subject import VirtualSubject

    vs = VirtualSubject(model="components", montage="biosemi32", sfreq=250.0, noise_scale=0.0)
    assert isinstance(vs.model, ComponentsModel) and isinstance(vs._noise, ComponentsBackground)
    vs.t0 = 0.0
    vs.add_marker("stim/c01_i02", 0.2)
    vs._schedule_markers(0)
    x = vs._take_pending(250)
    assert x.shape == (32, 250) and np.abs(x).max() > 1e-6 and not x[:, :50].any()
    assert isinstance(VirtualSubject().model, SubjectModel)


# ---------------------------------------------------------------- calibration
def calibrate(montage: str, sfreq: float, n_trials: int = 2000, seed: int = 0) -> float:
    """40-way single-trial top-1 of the linear baseline on ``synthetic:N,model=components``
    (split by image: ~1440 training trials, 400 test trials of unseen images)."""
    from bci_app.datasets.spec import load_spec
    from bci_app.models.baseline import LinearBaseline

    ds = load_spec(f"synthetic:{n_trials},seed={seed},model=components,montage={montage},"
                   f"sfreq={sfreq:g}")
    tr, te = ds.splits["train"], ds.splits["test"]
    lb = LinearBaseline(bin_ms=40.0, sfreq=ds.spec.sfreq).fit(ds.X[tr], ds.labels[tr])
    return lb.score(ds.X[te], ds.labels[te])


def test_linear_baseline_reads_20_to_40_percent():
    """The default SNR: shrinkage LDA, 40 ms bins, 20-460 ms, 32 channels at 250 Hz."""
    acc = calibrate("biosemi32", 250.0)
    assert 0.20 <= acc <= 0.40, f"LinearBaseline 40-way top-1 {acc:.3f}, expected 0.20-0.40"


@pytest.mark.slow
@pytest.mark.parametrize(("montage", "sfreq"), [("biosemi64", 512.0), ("biosemi128", 1000.0)])
def test_linear_baseline_reads_20_to_40_percent_on_other_caps(montage, sfreq):
    acc = calibrate(montage, sfreq)
    assert 0.20 <= acc <= 0.40, f"{montage} {sfreq:g} Hz: top-1 {acc:.3f}, expected 0.20-0.40"
