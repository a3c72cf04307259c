"""InferenceWorker: every trial gets one outcome, policies drop what they should, errors
do not kill the thread. Runs the real Reconstructor built from tiny components."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from bci_app.messages import Trial
from bci_app.session.inference import InferenceWorker, local_clock


def tiny_reconstructor(n_chans: int = 128, n_times: int = 440, seed: int = 0):
    """A real Reconstructor from tiny, untrained components (diffusers' dummy-components
    pattern): the whole inference code path in milliseconds on a CPU."""
    from bci_app.models.encoders import BinnedLinearEncoder
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.models.saliency_gan import SaliencyGenerator
    from bci_app.models.semantic import SemanticHead
    from bci_app.preprocessing import PreprocessingSpec
    from bci_app.simulation.montage import standard_montage_128

    torch.manual_seed(seed)
    names = standard_montage_128()[:n_chans]
    spec = PreprocessingSpec(sfreq=1000.0, ch_names=names)
    comps = {
        "encoder": BinnedLinearEncoder(n_chans, 16, n_times, sfreq=1000.0),
        "generator": SaliencyGenerator(z_dim=8, cond_dim=16, resolution=16, base_channels=8),
        "semantic": SemanticHead(16, seq_len=4, embed_dim=16, hidden=16),
    }
    cfg = {"spec": spec.to_dict(), "classes": [f"c{i}" for i in range(4)], "n_times": n_times}
    return Reconstructor(cfg, comps, device="cpu", dtype="float32")


def make_trial(index: int, n_chans: int = 128, n_times: int = 440, reject: str | None = None) -> Trial:
    now = local_clock()
    return Trial(
        data=np.random.default_rng(index).standard_normal((n_chans, n_times)).astype(np.float32),
        marker=f"stim/c00_i{index % 50:02d}", stim_id=f"c00_i{index % 50:02d}", onset=now - 0.5,
        onset_sample=index * 500, sfreq=1000.0, ch_names=[], index=index,
        last_sample_time=now, emitted_time=now, reject_reason=reject,
    )


class Gate:
    """Wraps a reconstructor so the test decides when a batch may finish (the real model
    still runs): lets a test fill the queue deterministically."""

    def __init__(self, rec):
        self.rec = rec
        self.open = threading.Event()
        self.entered = threading.Event()
        self.spec = rec.spec
        self.seed = rec.seed
        self.batches: list[int] = []

    def warmup(self, n):
        self.rec.warmup(n)

    def reconstruct(self, x, **kw):
        self.entered.set()
        assert self.open.wait(10), "gate never opened"
        self.batches.append(len(x))
        return self.rec.reconstruct(x, **kw)


@pytest.fixture(scope="module")
def rec():
    return tiny_reconstructor()


def _collect():
    out, lock = [], threading.Lock()

    def cb(r):
        with lock:
            out.append(r)
    return out, cb


def test_reconstructs_every_trial_with_stage_times(rec):
    results, cb = _collect()
    w = InferenceWorker(rec, queue_size=8, on_result=cb).start()
    try:
        for i in range(5):
            assert w.submit(make_trial(i))
        assert w.wait_idle(20)
    finally:
        w.stop()
    assert [r.outcome for r in results] == ["reconstructed"] * 5
    r = results[0]
    assert r.reconstruction.image.dtype == np.uint8 and r.reconstruction.image.ndim == 3
    for key in ("epoch", "queue", "encoder", "saliency", "semantic", "refiner", "end_to_end"):
        assert key in r.times_ms and r.times_ms[key] >= 0, key
    # end to end covers at least the model stages
    model = sum(r.times_ms[k] for k in ("encoder", "saliency", "semantic", "refiner"))
    assert r.times_ms["end_to_end"] >= model
    assert w.stats()["reconstructed"] == 5


@pytest.mark.parametrize("policy,kept", [("drop_oldest", [0, 3, 4]), ("drop_newest", [0, 1, 2])])
def test_drop_policies_count_every_drop(rec, policy, kept):
    gate = Gate(rec)
    gate.open.set()  # let warm-up through
    results, cb = _collect()
    w = InferenceWorker(gate, queue_size=2, policy=policy, on_result=cb, warmup=1).start()
    gate.open.clear()
    gate.entered.clear()
    try:
        t0 = time.perf_counter()
        w.submit(make_trial(0))
        assert gate.entered.wait(10)  # trial 0 is being reconstructed; queue empty
        for i in range(1, 5):
            w.submit(make_trial(i))
        assert time.perf_counter() - t0 < 5  # submit never waited for the model
        assert w.queue_depth == 2
        gate.open.set()
        assert w.wait_idle(20)
    finally:
        w.stop()
    done = sorted(r.trial.index for r in results if r.outcome == "reconstructed")
    dropped = sorted(r.trial.index for r in results if r.outcome == "dropped")
    assert done == kept
    assert dropped == sorted(set(range(5)) - set(kept))
    assert all(r.reason == policy for r in results if r.outcome == "dropped")
    st = w.stats()
    assert st["dropped"] == 2 and st["reconstructed"] == 3 and st["submitted"] == 5


def test_block_policy_is_lossless(rec):
    gate = Gate(rec)
    gate.open.set()
    results, cb = _collect()
    w = InferenceWorker(gate, queue_size=1, policy="block", on_result=cb, warmup=0).start()
    gate.open.clear()
    try:
        w.submit(make_trial(0))
        assert gate.entered.wait(10)
        w.submit(make_trial(1))  # fills the queue
        t = threading.Thread(target=w.submit, args=(make_trial(2),))
        t.start()
        t.join(0.3)
        assert t.is_alive(), "block policy should wait for room"
        gate.open.set()
        t.join(10)
        assert w.wait_idle(20)
    finally:
        w.stop()
    assert sorted(r.trial.index for r in results if r.outcome == "reconstructed") == [0, 1, 2]


def test_rejected_trials_skip_the_model_and_are_counted(rec):
    results, cb = _collect()
    w = InferenceWorker(rec, on_result=cb, warmup=0).start()
    try:
        assert not w.submit(make_trial(0, reject="nan"))
        assert w.submit(make_trial(1))
        assert w.wait_idle(20)
    finally:
        w.stop()
    by = {r.trial.index: r for r in results}
    assert by[0].outcome == "rejected" and by[0].reason == "nan"
    assert by[1].outcome == "reconstructed"
    assert w.stats()["rejected"] == {"nan": 1}


def test_changes_wait_for_the_batch_running_and_apply_before_the_next(rec):
    """Another bundle (or new sampling settings) sent while a trial is being reconstructed
    waits for it: that trial finishes with the old model, every later one uses the new."""
    old, new = Gate(rec), Gate(rec)
    old.open.set()
    new.open.set()
    results, cb = _collect()
    w = InferenceWorker(old, on_result=cb, warmup=0).start()
    old.open.clear()
    try:
        w.submit(make_trial(0))
        assert old.entered.wait(10)
        swap = threading.Thread(target=w.use, args=(new,))
        swap.start()
        swap.join(0.3)
        assert swap.is_alive() and w.reconstructor is old  # waits for the batch running
        old.open.set()
        swap.join(10)
        assert not swap.is_alive() and w.reconstructor is new
        w.submit(make_trial(1))
        assert w.wait_idle(20)
        w.set_sampling(3, 0.7, 2.0)  # idle: in force when the call returns
        assert (new.steps, new.strength, new.guidance) == (3, 0.7, 2.0)
    finally:
        w.stop()
    assert old.batches == [1] and new.batches == [1]
    assert sorted((r.trial.index, r.outcome) for r in results) == [(0, "reconstructed"), (1, "reconstructed")]
    w.set_sampling(1, 1.0, None)  # the thread has ended: applied by the caller
    assert (new.steps, new.strength, new.guidance) == (1, 1.0, None)


def test_model_error_is_reported_and_worker_goes_on(rec):
    errors, results = [], []
    w = InferenceWorker(rec, on_result=results.append, on_error=lambda e, t: errors.append(e),
                        warmup=0).start()
    try:
        bad = make_trial(0)
        bad.data = bad.data[:10]  # wrong channel count: the model raises ValueError
        w.submit(bad)
        w.submit(make_trial(1))
        assert w.wait_idle(20)
    finally:
        w.stop()
    assert [r.outcome for r in sorted(results, key=lambda r: r.trial.index)] == ["error", "reconstructed"]
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert w.alive is False and "ValueError" in w.stats()["last_error"]


def test_bad_arguments_are_value_errors(rec):
    with pytest.raises(ValueError, match="policy"):
        InferenceWorker(rec, policy="newest")
    with pytest.raises(ValueError, match="queue_size"):
        InferenceWorker(rec, queue_size=0)


def test_warmup_failure_raises_at_start():
    class Broken:
        def warmup(self, n):
            raise RuntimeError("no weights")

    with pytest.raises(RuntimeError, match="warm-up failed: no weights"):
        InferenceWorker(Broken()).start()


# ----------------------------------------------------------------------------- one trial, one image
def _live_images(rec, trials, max_batch: int) -> tuple[dict[int, np.ndarray], list[int]]:
    """Images by trial index from the live worker; with ``max_batch`` > 1 the trials after the
    first wait behind a closed gate so that they are reconstructed as one batch."""
    gate = Gate(rec)
    gate.open.set()
    results, cb = _collect()
    w = InferenceWorker(gate, queue_size=len(trials), max_batch=max_batch, on_result=cb, warmup=1).start()
    gate.batches.clear()
    try:
        if max_batch > 1:
            gate.open.clear()
            gate.entered.clear()
            w.submit(trials[0])
            assert gate.entered.wait(10)
            for t in trials[1:]:
                w.submit(t)
            gate.open.set()
        else:
            for t in trials:
                w.submit(t)
        assert w.wait_idle(30)
    finally:
        w.stop()
    assert [r.outcome for r in results] == ["reconstructed"] * len(trials)
    return {r.trial.index: r.reconstruction.image for r in results}, list(gate.batches)


def test_same_trial_same_image_live_batched_and_in_evaluate(tmp_path):
    """A trial (stimulus id + onset sample) gives identical images through the live worker
    alone (batches of 1), the live worker batching, and evaluate (batches of 32)."""
    import json

    from PIL import Image

    from bci_app.datasets import EEGImageDataset
    from bci_app.evaluation.evaluate import evaluate
    from bci_app.evaluation.runner import run_reconstructor, trial_onsets, trial_seeds
    from bci_app.models.ssim import resize_images
    from bci_app.preprocessing import PreprocessingSpec
    from bci_app.stimuli import DemoStimulusSet
    from tests.models.test_reconstructor import tiny_reconstructor

    rec = tiny_reconstructor()
    stim = DemoStimulusSet(n_per_class=2, size=32)
    ids = list(stim.stim_ids)
    n = len(ids)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, 4, 20)).astype(np.float32)
    onsets = 5000 + 700 * np.arange(n)
    n_test = 6
    ds = EEGImageDataset(
        X=X, labels=np.array([stim.label(s) for s in ids]), stim_ids=ids, subjects=np.zeros(n, np.int64),
        class_names=stim.class_names(), spec=PreprocessingSpec(sfreq=100.0, ch_names=[f"C{i}" for i in range(4)],
                                                               tmin=0.0, tmax=0.2),
        image_loader=lambda s: np.array(stim.image(s)), source="tiny",
        splits={"train": np.arange(n_test, n), "val": np.zeros(0, np.int64), "test": np.arange(n_test)},
    )
    ds.onset_samples = onsets  # what a recorded session's loader gives

    trials = [Trial(data=X[i], marker=f"stim/{ids[i]}", stim_id=ids[i], onset=float(onsets[i]) / 100.0,
                    onset_sample=int(onsets[i]), sfreq=100.0, ch_names=[], index=i,
                    last_sample_time=local_clock(), emitted_time=local_clock()) for i in range(n_test)]
    alone, sizes1 = _live_images(rec, trials, max_batch=1)
    batched, sizes2 = _live_images(rec, trials, max_batch=8)
    assert set(sizes1) == {1} and max(sizes2) == n_test - 1  # really batched
    # evaluate's path: trial seeds from (stim id, onset sample), batches of 32
    te = ds.splits["test"]
    on, source = trial_onsets(ds)
    assert "onset samples" in source
    out = run_reconstructor(rec, ds.X[te], trial_seeds([ids[i] for i in te], on[te], rec.seed), batch=32)
    for i in range(n_test):
        np.testing.assert_array_equal(batched[i], alone[i])
        np.testing.assert_array_equal(out.images[i], alone[i])
    # the trials differ from each other (the check above is not trivially true)
    assert len({alone[i].tobytes() for i in range(n_test)}) == n_test
    # and evaluate itself saves exactly those images (at the SSIM resolution)
    m = evaluate(rec, ds, tmp_path, draws=5, progress=False, save_images=True)
    index = json.loads((tmp_path / "images" / "index.json").read_text())
    assert [e["trial"] for e in index] == list(range(n_test))
    for k, e in enumerate(index):
        saved = np.asarray(Image.open(tmp_path / "images" / f"{k:04d}_recon.png"))
        np.testing.assert_array_equal(saved, resize_images(alone[e["trial"]], m["ssim_resolution"]))
