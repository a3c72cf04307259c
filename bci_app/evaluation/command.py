"""``bci-app evaluate``: load the bundle and the data, run :func:`~bci_app.evaluation.evaluate.evaluate`,
print one summary line."""

from __future__ import annotations

import argparse
import time


def _stages_line(stages: dict) -> str:
    """"decoder 0.45 -> caption 0.44 -> drawing 0.42" (N-way figures of metrics["stages"])."""
    parts = [f"{k} {r['acc']:.3f}" for k, r in stages.get("rows", {}).items() if r.get("acc") is not None]
    return "stages " + " -> ".join(parts) if parts else "stages n/a"


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
    ds.X = normalise(ds.X, spec)
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
    probe = m["leakage_probe"]
    b = m["baseline"]
    d = b.get("model_minus_baseline") or {}
    print(
        f"{m['ways']}-way top-{m['topk']}: {m['acc']:.3f} (chance {m['chance']:.3f}, p={m['acc_p']:.3g}) | "
        f"baseline {b.get('acc')} (model - baseline {d.get('diff')}, p={d.get('p')}) | "
        f"SSIM@{m['ssim_resolution']} {m['ssim']:.3f} (shuffled {m['ssim_chance']:.3f}) | "
        f"IS {m['inception_score']} | {_stages_line(m.get('stages') or {})} | probe {'FLAGGED' if probe.get('flagged') else 'ok'} ({probe.get('acc')}) | "
        f"n={m['n']} | {time.perf_counter() - t0:.0f} s -> {args.out}"
    )
    return 0
