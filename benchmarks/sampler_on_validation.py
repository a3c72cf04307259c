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
    ap.add_argument("--write", action="store_true",
                    help="store the best setting (top-1; ties: SSIM) as the bundle's sampling defaults and the "
                         "table in its config.json (training.selection.sampling); needs --split val")
    args = ap.parse_args()
    if args.write and args.split != "val":
        ap.error("--write chooses on validation images only (--split val)")

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
    if args.write:
        write_choice(args.bundle, rows, args.sessions, len(X))


def write_choice(bundle: str, rows: list[dict], sessions: list[int], n: int) -> None:
    """Make the best row the bundle's sampling defaults (refiner_config.json, and the recipe as
    recorded in config.json) and record the whole table under ``training.selection.sampling``."""
    from bci_app.models.bundle import read_bundle_config, resolve_bundle_path

    best = max(rows, key=lambda r: (round(r["acc"], 6), r["ssim"]))
    steps, strength, guidance = best["setting"].split(":")
    path = resolve_bundle_path(bundle)
    conf = read_bundle_config(path)
    ref_file = path / conf["refiner"]["path"] / "refiner_config.json"
    ref = json.loads(ref_file.read_text())
    ref.update(steps=int(steps), strength=float(strength), guidance_scale=float(guidance))
    ref_file.write_text(json.dumps(ref, indent=2) + "\n")
    recipe = conf["training"]["config"]["refiner"]
    recipe.update(sample_steps=int(steps), sample_strength=float(strength), sample_guidance=float(guidance))
    conf["training"].setdefault("selection", {})["sampling"] = {
        "chosen": best["setting"], "rows": rows, "n_val": n, "sessions": [f"synthetic:N,seed={s}" for s in sessions],
        "rule": "steps:strength:guidance with the best 40-way top-1 on validation-split images (ties: SSIM), "
                "benchmarks/sampler_on_validation.py --write; the refiner's weights are unchanged"}
    (path / "config.json").write_text(json.dumps(conf, indent=2) + "\n")
    print(f"wrote sampling defaults {best['setting']} to {path}")


if __name__ == "__main__":
    main()
