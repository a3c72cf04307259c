"""The ``bci-app`` command: one entry point, one subcommand per job.

Each subcommand's implementation lives in the module named for it and is imported
lazily, so ``bci-app doctor`` or ``bci-app simulate`` never import Qt or diffusers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# subcommand -> (module, function)
_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("bci_app.session.commands", "run_demo"),
    "live": ("bci_app.session.commands", "run_live"),
    "replay": ("bci_app.session.commands", "run_replay"),
    "present": ("bci_app.ui.presenter", "run_present"),
    "simulate": ("bci_app.simulation.command", "run_simulate"),
    "train": ("bci_app.training.recipe", "run_train"),
    "evaluate": ("bci_app.evaluation.evaluate", "run_evaluate"),
    "bench": ("bci_app.session.bench", "run_bench"),
    "doctor": ("bci_app.doctor", "run_doctor"),
}


def _add_live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", default="demo", help="model bundle directory, or 'demo' (shipped)")
    p.add_argument("--record", metavar="DIR", help="record raw EEG + markers to FIF in DIR")
    p.add_argument("--headless", action="store_true", help="no window; write report files to --out")
    p.add_argument("--trials", type=int, default=None, help="stop after N stimulus markers")
    p.add_argument("--out", default="out", metavar="DIR", help="output directory (headless)")
    p.add_argument("--markers", default=None, metavar="NAME", help="LSL marker stream name")
    p.add_argument("--marker-pattern", default=None, help="regex mapping marker strings to stimulus ids")
    p.add_argument("--device", default=None, help="inference device: auto, cpu, cuda, cuda:N")
    p.add_argument("--steps", type=int, default=None, help="refiner steps")
    p.add_argument("--strength", type=float, default=None, help="refiner img2img strength")
    p.add_argument("--config", default=None, metavar="FILE", help="TOML settings file")
    p.add_argument("--images", default=None, metavar="DIR", help="folder of the stimulus images")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bci-app",
        description="Reconstruct seen images from EEG, live (NeuroImagen method).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="virtual subject + presenter + live pipeline with the demo bundle")
    _add_live_options(p)
    p.add_argument("--seed", type=int, default=12345, help="seed of the virtual subject's session")
    p.add_argument("--snr", type=float, default=None, help="virtual subject signal-to-noise factor")
    p.add_argument("--rate", type=float, default=None, help="stimuli per second (default 2)")

    p = sub.add_parser("live", help="live pipeline on a real source")
    p.add_argument("--source", required=True, help="lsl[:NAME] | brainflow:BOARD")
    _add_live_options(p)

    p = sub.add_parser("replay", help="stream a recorded session over LSL and run the live pipeline on it")
    p.add_argument("session", metavar="SESSION", help="session directory or .fif file")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed factor")
    _add_live_options(p)

    p = sub.add_parser("present", help="show stimuli full screen and push LSL markers")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--images", metavar="DIR", help="folder of images (sub-folders = classes)")
    g.add_argument("--demo-set", action="store_true", help="the procedural demo set (default)")
    p.add_argument("--on", type=float, default=0.5, help="seconds each image is shown")
    p.add_argument("--off", type=float, default=0.0, help="blank seconds between images")
    p.add_argument("--order", choices=("random", "block"), default="random")
    p.add_argument("--trials", type=int, default=None)
    p.add_argument("--screen", type=int, default=None, help="screen index for full screen")
    p.add_argument("--windowed", action="store_true", help="not full screen")
    p.add_argument("--photodiode", action="store_true", help="flash a patch in the bottom-left corner")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stream-name", default="bci-app-markers")

    p = sub.add_parser("simulate", help="write a simulated session (raw EEG + annotations) to FIF")
    p.add_argument("--out", required=True, metavar="FILE.fif")
    p.add_argument("--trials", type=int, default=400)
    p.add_argument("--design", choices=("rapid", "block"), default="rapid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snr", type=float, default=1.0)
    p.add_argument("--on", type=float, default=0.5, help="stimulus onset asynchrony (s)")

    p = sub.add_parser("train", help="train a model bundle")
    p.add_argument("--data", required=True, metavar="SPEC")
    p.add_argument("--out", required=True, metavar="BUNDLE")
    p.add_argument("--images", default=None, metavar="DIR")
    p.add_argument("--config", default=None, metavar="FILE")
    p.add_argument("--stages", default="encoder,gan,semantic,refiner")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="resume from checkpoints in BUNDLE")

    p = sub.add_parser("evaluate", help="paper metrics, baselines, leakage probe, HTML report")
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True, metavar="SPEC")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--images", default=None, metavar="DIR")
    p.add_argument("--ways", type=int, default=None, help="N-way (default 50, capped at the class count)")
    p.add_argument("--topk", type=int, default=1)
    p.add_argument("--draws", type=int, default=100, help="random N-way draws per trial")
    p.add_argument("--device", default="auto")
    p.add_argument("--ablation", action="store_true", help="also run the Table 3 ablation rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="refiner steps (default: the bundle's)")
    p.add_argument("--strength", type=float, default=None, help="refiner strength (default: the bundle's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="refiner classifier-free guidance weight (default: the bundle's; <= 1: none)")

    p = sub.add_parser("bench", help="latency/throughput benchmark, JSON out")
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", choices=("demo", "sd-turbo"), default="demo")
    p.add_argument("--mode", choices=("pipeline", "acquisition", "window"), default="pipeline")
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--rate", type=float, default=5.0, help="trials per second offered")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--bundle", default="demo")
    p.add_argument("--no-trace", action="store_true",
                   help="run the demo refiner eagerly instead of through traced graphs (for comparison)")
    p.add_argument("--out", required=True, metavar="FILE.json")

    sub.add_parser("doctor", help="what is installed and found")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module, func = _COMMANDS[args.command]
    fn = getattr(importlib.import_module(module), func)
    try:
        rc = fn(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"bci-app {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bci-app {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
