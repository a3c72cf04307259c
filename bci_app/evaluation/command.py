"""``bci-app evaluate``: load the bundle and the data, run :func:`~bci_app.evaluation.evaluate.evaluate`,
print one summary line."""

from __future__ import annotations

import argparse
import time

import numpy as np


def _stages_line(stages: dict) -> str:
    """"decoder 0.45 -> caption 0.44 -> drawing 0.42" (N-way figures of metrics["stages"])."""
    parts = [f"{k} {r['acc']:.3f}" for k, r in stages.get("rows", {}).items() if r.get("acc") is not None]
    return "stages " + " -> ".join(parts) if parts else "stages n/a"


def lead_line(m: dict) -> str:
    """The first thing evaluate says: the model against its own linear read-out (paired
    difference with its CI) and the stage where the image path loses the most."""
    b = m.get("baseline") or {}
    d = b.get("model_minus_baseline") or {}
    if b.get("acc") is None or d.get("diff") is None:
        head = f"model {m['acc']:.3f}: no linear baseline in this bundle to compare with"
    else:
        ci = d.get("ci") or [None, None]
        verdict = ("ABOVE" if ci[0] is not None and ci[0] > 0 else
                   "BELOW" if ci[1] is not None and ci[1] < 0 else "not distinguishable from")
        head = (f"model vs its own linear readout: {m['acc']:.3f} vs {b['acc']:.3f}, paired difference "
                f"{d['diff']:+.3f} [95 % CI {ci[0]:+.3f}, {ci[1]:+.3f}], p={d.get('p')} - {verdict} the baseline")
    st = m.get("stages") or {}
    if st.get("lost_most_at"):
        head += f" | most lost at {st['lost_most_at']} ({st['top1_lost'][st['lost_most_at']]:+.3f})"
    return head


def run_evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``bci-app evaluate`` (argparse namespace from ``bci_app.cli``)."""
    from bci_app.datasets import load_spec
    from bci_app.evaluation.evaluate import evaluate
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.preprocessing import PreprocessingSpec, normalise

    t0 = time.perf_counter()
    recon = Reconstructor.from_bundle(
        args.bundle, device=getattr(args, "device", "auto") or "auto", steps=getattr(args, "steps", None),
        strength=getattr(args, "strength", None), guidance=getattr(args, "guidance", None),
    )
    bundle_config = dict(getattr(recon, "config", {}) or {})
    spec = recon.spec
    raw_spec = PreprocessingSpec.from_dict({**spec.to_dict(), "norm_mean": None, "norm_std": None})
    dcfg = bundle_config.get("training", {}).get("config", {}).get("data", {})
    split_seed = int(dcfg.get("split_seed", 0))
    # --event-map, --trigger-channel and --photodiode are options of a session spec here
    # (folded by bci_app.cli): one loading path with train
    ds = load_spec(
        args.data,
        images_dir=getattr(args, "images", None),
        preprocessing=raw_spec,
        split_seed=split_seed,
        test_frac=float(dcfg.get("test_frac", 0.2)),
        val_frac=float(dcfg.get("val_frac", 0.1)),
        marker_pattern=getattr(args, "marker_pattern", None),
    )
    recon.check_compatible(list(ds.spec.ch_names), float(ds.spec.sfreq), int(ds.X.shape[2]))
    ds.X = np.asarray(ds.X, dtype=np.float32)
    for a in range(0, len(ds.X), 256):  # in place, 256 trials at a time: no float64 copy of the set
        ds.X[a : a + 256] = normalise(ds.X[a : a + 256], spec)
    meta = {
        "bundle": str(getattr(recon, "bundle_dir", args.bundle)),
        "data": args.data,
        "device": str(recon.device),
        "split_seed": split_seed,
    }
    m = evaluate(
        recon, ds, args.out, ways=args.ways, topk=args.topk, draws=args.draws, seed=args.seed,
        ablation=bool(getattr(args, "ablation", False)), bundle_config=bundle_config, meta=meta,
        save_images=bool(getattr(args, "save_images", False)),
        weights_dir=getattr(args, "weights_dir", None),
    )
    from bci_app.evaluation.zero_shot import add_zero_shot, zero_shot_line

    # the bundle's held-out classes, when the data has trials of them: metrics.json "zero_shot"
    zs = add_zero_shot(recon, ds, bundle_config, args.out, seed=args.seed)
    probe = m["leakage_probe"]
    print(lead_line(m))
    if m.get("photodiode"):
        pd = m["photodiode"]
        print(f"photodiode {args.photodiode}: marker-to-light delay {pd['mean_ms']} ms "
              f"(SD {pd['sd_ms']}, {pd['min_ms']}..{pd['max_ms']}) over {pd['n'] - pd['missing']} "
              f"of {pd['n']} trials; {pd['missing']} without an edge rejected")
    print(
        f"{m['ways']}-way top-{m['topk']}: {m['acc']:.3f} (chance {m['chance']:.3f}, p={m['acc_p']:.3g}) | "
        f"SSIM@{m['ssim_resolution']} {m['ssim']:.3f} (shuffled {m['ssim_chance']:.3f}) | "
        f"IS {m['inception_score']} | {_stages_line(m.get('stages') or {})} | probe {'FLAGGED' if probe.get('flagged') else 'ok'} ({probe.get('acc')}) | "
        f"n={m['n']} | {time.perf_counter() - t0:.0f} s -> {args.out}"
    )
    if zs is not None:
        print(zero_shot_line(zs))
    return 0
