"""Choose a bundle's sampling defaults on validation images only (never the test images).

Runs the bundle on the trials of the given simulated sessions whose image is in the
bundle's validation split (``training.split_images["val"]``), at each sampling setting,
scored like ``bci-app evaluate`` (40-way top-1 with the classifier, same draws, per-trial
seeds; SSIM at 64 px), and prints and writes a JSON table. Example (the demo bundle)::

    python benchmarks/sampler_on_validation.py --bundle demo --sessions 501 502 \\
        --settings 4:0.5:1.25 4:0.5:1.5 4:0.5:2 --out /tmp/sampler.json

A setting is ``steps:strength:guidance``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="demo")
    ap.add_argument("--sessions", type=int, nargs="+", default=[501, 502])
    ap.add_argument("--trials", type=int, default=2000, help="trials per simulated session")
    ap.add_argument("--settings", nargs="+", required=True, metavar="STEPS:STRENGTH:GUIDANCE")
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--split", choices=("val", "train"), default="val",
                    help="images to run on: validation (for choosing), or training (to see over-fitting)")
    ap.add_argument("--out", default=None, metavar="FILE.json")
    args = ap.parse_args()

    from bci_app.datasets import load_spec
    from bci_app.evaluation import metrics as M
    from bci_app.evaluation.runner import run_reconstructor, trial_onsets, trial_seeds
    from bci_app.evaluation.stages import stage_diagnostics
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.models.ssim import ssim_batch
    from bci_app.preprocessing import PreprocessingSpec, normalise

    base = Reconstructor.from_bundle(args.bundle, device="cpu")
    val_ids = set(base.config["training"]["split_images"][args.split])
    test_ids = set(base.config["training"]["split_images"]["test"])
    raw = PreprocessingSpec.from_dict({**base.spec.to_dict(), "norm_mean": None, "norm_std": None})
    X, seen, truth, seeds = [], [], [], []
    for s in args.sessions:
        ds = load_spec(f"synthetic:{args.trials},seed={s}", preprocessing=raw)
        idx = [i for i, sid in enumerate(ds.stim_ids) if str(sid) in val_ids]
        assert not {str(ds.stim_ids[i]) for i in idx} & test_ids
        onsets, _ = trial_onsets(ds)
        X.append(normalise(ds.X[idx], base.spec))
        seen.append(ds.images(idx))
        truth.append(np.asarray(ds.labels)[idx])
        seeds += trial_seeds([str(ds.stim_ids[i]) for i in idx], onsets[idx], base.seed)
    X, seen, truth = np.concatenate(X), np.concatenate(seen), np.concatenate(truth)
    print(f"{len(X)} trials of {args.split}-split images from sessions {args.sessions}")
    rows = []
    for setting in args.settings:
        steps, strength, guidance = setting.split(":")
        rec = Reconstructor.from_bundle(args.bundle, device="cpu", steps=int(steps), strength=float(strength),
                                        guidance=float(guidance))
        t0 = time.perf_counter()
        out = run_reconstructor(rec, X, seeds, batch=32)
        per = M.n_way_top_k_per_trial(out.class_probs, truth, 40, 1, args.draws, rng=0)
        st = stage_diagnostics({"decoder": out.eeg_class_probs, "caption": out.caption_probs,
                                "drawing": out.class_probs}, truth, ways=40, topk=1, draws=args.draws, seed=0)
        row = {"setting": setting, "acc": float(per.mean()), "ssim": float(ssim_batch(seen, out.images, 64).mean()),
               "drawn_given_caption_right": st["chain"]["drawing_right_given_caption_right"]["rate"],
               "caption": st["rows"]["caption"]["acc"], "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"bundle": args.bundle, "split": args.split, "sessions": args.sessions, "n": len(X),
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
