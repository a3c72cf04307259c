"""How often the refiner draws the class its caption names - the drawing step alone.

Feeds a bundle's refiner the *exact* caption embedding of each trial's class (an oracle
caption, so the EEG side cannot be blamed) on trials of validation-split images of fresh
simulated sessions, starting from the GAN's saliency map (the live path) and from grey, and
judges the drawings with the bundle's image classifier: all-class top-1, and whether the
drawn colour and shape are right. Also the same with the semantic head's own embedding.
Example::

    python benchmarks/refiner_fidelity.py --bundle demo --sessions 501 --trials 160 \\
        --settings 4:0.5:1.5 4:0.5:3

A setting is ``steps:strength:guidance``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="demo")
    ap.add_argument("--sessions", type=int, nargs="+", default=[501])
    ap.add_argument("--trials", type=int, default=160, help="validation-image trials per session (at most)")
    ap.add_argument("--settings", nargs="+", default=["4:0.5:1.5"], metavar="STEPS:STRENGTH:GUIDANCE")
    ap.add_argument("--out", default=None, metavar="FILE.json")
    args = ap.parse_args()

    from bci_app.datasets import load_spec
    from bci_app.models.reconstructor import Reconstructor, trial_seed
    from bci_app.models.text import build_text_encoder
    from bci_app.preprocessing import PreprocessingSpec, normalise
    from bci_app.stimuli.demo_set import COLOURS

    rec = Reconstructor.from_bundle(args.bundle, device="cpu")
    val = set(rec.config["training"]["split_images"]["val"])
    raw = PreprocessingSpec.from_dict({**rec.spec.to_dict(), "norm_mean": None, "norm_std": None})
    te = build_text_encoder(rec.config["semantic"]["text_encoder"])
    X, y, seeds, n_classes = [], [], [], None
    for s in args.sessions:
        ds = load_spec(f"synthetic:2000,seed={s}", preprocessing=raw)
        n_classes = ds.n_classes
        idx = [i for i, sid in enumerate(ds.stim_ids) if str(sid) in val][: args.trials]
        X.append(normalise(ds.X[idx], rec.spec))
        y.append(ds.labels[idx])
        seeds += [trial_seed(str(ds.stim_ids[i]), int(i), rec.seed) for i in idx]
    X, y = np.concatenate(X), np.concatenate(y)
    captions = te.encode([ds.label_caption(k) for k in range(n_classes)]).float()
    n_col = len(COLOURS)
    with torch.no_grad():
        feats = rec.encoder(torch.as_tensor(X).float())
        z = torch.cat([torch.randn(1, rec.generator.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
        maps = rec.generator(z, rec._gan_condition(feats))
        emb, mix = rec.semantic.embed(feats)
        oracle = captions[torch.as_tensor(y)]

        def judge(start: torch.Tensor, e: torch.Tensor, **kw) -> np.ndarray:
            out = []
            for a in range(0, len(y), 32):
                g = [torch.Generator().manual_seed(s) for s in seeds[a:a + 32]]
                img = rec.refiner.refine(start[a:a + 32], e[a:a + 32], generator=g, **kw)
                u8 = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
                out.append(rec.classify_images(u8).argmax(1))
            return np.concatenate(out)

        rows = []
        caption_right = mix.argmax(1).numpy() == y
        for setting in args.settings:
            st, sg, w = setting.split(":")
            kw = {"steps": int(st), "strength": float(sg), "guidance_scale": float(w)}
            row = {"setting": setting, "n": int(len(y))}
            for name, start, e in (("oracle_map", maps, oracle), ("oracle_grey", torch.full_like(maps, 0.5), oracle),
                                   ("head_map", maps, emb)):
                p = judge(start, e, **kw)
                row[name] = {"top1": float(np.mean(p == y)), "colour": float(np.mean(p % n_col == y % n_col)),
                             "shape": float(np.mean(p // n_col == y // n_col))}
            p = judge(maps, emb, **kw)
            row["head_map"]["given_caption_right"] = float(np.mean((p == y)[caption_right]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
