"""The lab's calibration loop, measured on several caps and both simulator structures.

For each case: ``bci-app simulate`` a calibration session and a second, held-out session
(another seed: other trials, and the images the bundle's split keeps from training), ``bci-app
train --config configs/calibration.toml`` on the first, ``bci-app evaluate`` on the second,
and one table row: the decoder (encoder read-out), the reconstruction (the classifier on the
drawing) and the bundle's own linear baseline, on the same held-out trials and N-way draws,
with the training time. Example::

    python benchmarks/calibration_loop.py --out /tmp/calib_loop \\
        --cases attributes:biosemi32:250 attributes:biosemi64:512 \\
                components:biosemi32:250 components:biosemi64:512

A case is ``MODEL:MONTAGE:SFREQ[:CLASSES]`` (CLASSES: a subset of that many demo classes; MODEL: ``attributes``, the virtual subject, or
``components``, the shared-ERP-components simulator). Writes ``OUT/calibration_loop.json``
and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, metavar="DIR")
    ap.add_argument("--cases", nargs="+", default=["attributes:biosemi32:250", "attributes:biosemi64:512",
                                                   "components:biosemi32:250", "components:biosemi64:512"])
    ap.add_argument("--calib-trials", type=int, default=600)
    ap.add_argument("--held-trials", type=int, default=1000)
    ap.add_argument("--config", default=str(Path(__file__).parents[1] / "configs" / "calibration.toml"))
    ap.add_argument("--seed", type=int, default=11, help="seed of the calibration sessions (held out: +1000)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "bci_app.cli"]
    rows = []
    for case in args.cases:
        model, montage, sfreq, *classes = case.split(":")
        d = out / case.replace(":", "_")
        d.mkdir(exist_ok=True)
        common = ["--montage", montage, "--sfreq", sfreq, "--model", model]
        if classes:
            common += ["--classes", classes[0]]
        run(exe + ["simulate", "--out", str(d / "calib_eeg.fif"), "--trials", str(args.calib_trials),
                   "--seed", str(args.seed), *common])
        run(exe + ["simulate", "--out", str(d / "held_eeg.fif"), "--trials", str(args.held_trials),
                   "--seed", str(args.seed + 1000), *common])
        t_train = run(exe + ["train", "--config", args.config, "--data", f"session:{d / 'calib_eeg.fif'}",
                             "--out", str(d / "bundle"), "--device", "cpu"])
        run(exe + ["evaluate", "--bundle", str(d / "bundle"), "--data", f"session:{d / 'held_eeg.fif'}",
                   "--out", str(d / "eval"), "--device", "cpu"])
        m = json.loads((d / "eval" / "metrics.json").read_text())
        conf = json.loads((d / "bundle" / "config.json").read_text())
        rows_st = (m.get("stages") or {}).get("rows", {})
        b = m["baseline"]
        sel = conf["training"].get("selection", {})
        rows.append({
            "case": case, "n": m["n"], "ways": m["ways"], "chance": m["chance"],
            "decoder": rows_st.get("decoder", {}).get("acc"), "caption": rows_st.get("caption", {}).get("acc"),
            "reconstruction": m["acc"], "baseline": b.get("acc"),
            "model_minus_baseline": b.get("model_minus_baseline"),
            "train_s": round(t_train, 1), "train_record_s": conf["training"]["times_s"].get("total"),
            "val": (sel.get("encoder") or {}).get("decoder"),
            "kept": {k: v.get("kept") for k, v in (sel.get("encoder") or {}).items() if isinstance(v, dict) and "kept" in v},
        })
        (out / "calibration_loop.json").write_text(json.dumps(rows, indent=2))
    print("\n| case | n (ways) | decoder | reconstruction | baseline | recon - baseline [CI] | train (s) | kept on validation |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        d = r["model_minus_baseline"] or {}
        ci = d.get("ci") or [float("nan")] * 2
        print(f"| {r['case']} | {r['n']} ({r['ways']}) | {r['decoder']:.3f} | {r['reconstruction']:.3f} | "
              f"{r['baseline']:.3f} | {d.get('diff', float('nan')):+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] | "
              f"{r['train_s']:.0f} | {', '.join(f'{k} {v}' for k, v in r['kept'].items())} |")


if __name__ == "__main__":
    main()
