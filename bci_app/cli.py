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
    "record": ("bci_app.session.record", "run_record"),
    "present": ("bci_app.ui.presenter_window", "run_present"),
    "simulate": ("bci_app.simulation.command", "run_simulate"),
    "train": ("bci_app.training.command", "run_train"),
    "evaluate": ("bci_app.evaluation.command", "run_evaluate"),
    "bench": ("bci_app.session.bench", "run_bench"),
    "doctor": ("bci_app.doctor", "run_doctor"),
}

# subcommands that open LSL streams (liblsl's log level is lowered for them)
_LSL_COMMANDS = frozenset({"demo", "live", "replay", "record", "present", "bench", "doctor"})


def _marker_pattern(value: str) -> str:
    """``--marker-pattern``: a valid regex with a named group ``id`` (the stimulus id)."""
    import re

    try:
        compiled = re.compile(value)
    except re.error as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid regular expression: {err}") from None
    if "id" not in compiled.groupindex:
        raise argparse.ArgumentTypeError(
            f"{value!r} has no named group 'id'; expected a regex whose group (?P<id>...) "
            f"captures the stimulus id, e.g. '{_default_pattern()}'"
        )
    return value


def _default_pattern() -> str:
    """The app's own marker pattern (``stim/<stimulus id>``), owned by bci_app.stimuli."""
    from bci_app.stimuli.markers import DEFAULT_PATTERN

    return DEFAULT_PATTERN


def _config_help(read: Sequence[str]) -> str:
    """``--config`` help listing the TOML tables the command reads (from bci_app.config)."""
    from bci_app.config import APP_TABLES, TRAIN_TABLES

    tables = ", ".join(f"[{t}]" for t in read)
    others = ", ".join(f"[{t}]" for t in APP_TABLES + TRAIN_TABLES if t not in read)
    return (f"TOML settings file; tables read: {tables}"
            + (f" (also accepted and ignored: {others})" if others else "")
            + "; unknown tables or keys are errors (default: none, built-in settings)")


def _run_folder(command: str) -> str:
    """``runs/COMMAND-YYYYmmdd-HHMMSS``: where a command writes without ``--out``."""
    from bci_app.session.runs import run_folder

    return str(run_folder(command))


def _app_tables() -> tuple[str, ...]:
    from bci_app.config import APP_TABLES

    return APP_TABLES


def _train_tables() -> tuple[str, ...]:
    from bci_app.config import TRAIN_TABLES

    return TRAIN_TABLES


def _add_live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", default="demo", help="model bundle directory, or 'demo' (shipped; the default)")
    p.add_argument("--record", metavar="DIR", help="record raw EEG + markers to FIF in DIR (default: no recording)")
    p.add_argument("--headless", action="store_true", help="no window; write report files to --out")
    p.add_argument("--trials", type=int, default=None,
                   help="end the session after N trials (the window then says so and stays open; default: "
                        "run until the window is closed or Ctrl-C; headless demo: 60; replay: every "
                        "marker of the session)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write report.json, trials.jsonl, grid.png here (default: headless, a new "
                        "runs/COMMAND-YYYYmmdd-HHMMSS; with the window, no files)")
    p.add_argument("--close-when-done", action="store_true",
                   help="with --trials: close the window when the session ends (scripted runs)")
    p.add_argument("--markers", default=None, metavar="NAME",
                   help="LSL marker stream name (default: the first stream of type Markers)")
    p.add_argument("--marker-pattern", default=None, type=_marker_pattern, metavar="REGEX",
                   help=f"regex whose named group 'id' is the stimulus id (default '{_default_pattern()}')")
    _add_event_options(p)
    p.add_argument("--device", default=None,
                   help="inference device: auto, cpu, cuda, cuda:N (default: [inference] device, else auto)")
    p.add_argument("--steps", type=int, default=None, help="refiner steps (default: the bundle's)")
    p.add_argument("--strength", type=float, default=None,
                   help="refiner img2img strength (default: the bundle's)")
    p.add_argument("--config", default=None, metavar="FILE", help=_config_help(_app_tables()))
    p.add_argument("--images", default=None, metavar="DIR",
                   help="folder of the stimulus images (default: the demo set's procedural images)")


def _add_event_options(p: argparse.ArgumentParser) -> None:
    """``--event-map`` and ``--trigger-channel``: how a lab's events become stimulus ids;
    ``--photodiode``: when the image really appeared."""
    p.add_argument("--event-map", default=None, metavar="FILE.tsv",
                   help="tab-separated 'marker<TAB>stimulus' lines: a marker string or an integer "
                        "trigger code -> a stimulus id (unmapped markers are counted, not fatal; "
                        "default: --marker-pattern)")
    p.add_argument("--trigger-channel", default=None, metavar="NAME",
                   help="events from this stim channel's codes (default: the stim-typed channel "
                        "of a recording without marker annotations)")
    p.add_argument("--photodiode", default=None, metavar="CHANNEL",
                   help="light-sensor channel over the presenter's --photodiode-patch (never an EEG "
                        "channel): each trial is re-timed to its light edge 0-150 ms after its marker "
                        "(no edge: rejected as photodiode_missing) and the marker-to-light delays are "
                        "reported (default: none, the markers' own times)")


_FOLDED = (("event_map", "event_map", "--event-map"), ("trigger_channel", "trigger", "--trigger-channel"),
           ("photodiode", "photodiode", "--photodiode"))


def _fold_event_options(args: argparse.Namespace) -> None:
    """``train``/``evaluate``: ``--event-map``/``--trigger-channel``/``--photodiode`` become
    options of the session data spec (``session:FILE,event_map=...,trigger=...,photodiode=...``),
    read by ``load_spec``."""
    given = [(key, flag, getattr(args, dest)) for dest, key, flag in _FOLDED if getattr(args, dest, None)]
    if not given:
        return
    if not str(args.data).startswith("session:"):
        raise ValueError(
            f"option(s) {', '.join(flag for _, flag, _ in given)} apply to recorded sessions "
            f"(--data session:FILE), not to {args.data!r}; drop them or use a session spec"
        )
    args.data = ",".join([str(args.data), *(f"{key}={v}" for key, _, v in given)])


def _add_dejitter_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-dejitter", action="store_true",
                   help="use the EEG stream's timestamps as they come (default: re-fitted against "
                        "the sample count, so bursts, arrival stamping and clock drift are not "
                        "read as lost samples)")


def _add_display_options(p: argparse.ArgumentParser) -> None:
    """How the presenter times and sizes the stimuli (``present``, ``record --present``)."""
    p.add_argument("--refresh", type=float, default=None, metavar="HZ",
                   help="display refresh rate (default: the screen's); --on/--off are whole frames")
    p.add_argument("--size-px", type=int, default=None,
                   help="image side in pixels (default: the window's shorter side)")
    p.add_argument("--size-deg", type=float, default=None,
                   help="image side in degrees of visual angle (needs --distance-cm; default: none)")
    p.add_argument("--distance-cm", type=float, default=None,
                   help="eye to screen distance (cm; default: none, needed by --size-deg)")
    p.add_argument("--screen-width-cm", type=float, default=None,
                   help="visible screen width (cm; default: the size the screen reports)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bci-app",
        description="Reconstruct seen images from EEG, live (NeuroImagen method).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug; default: warnings only)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="virtual subject + presenter + live pipeline with the demo bundle")
    _add_live_options(p)
    p.add_argument("--seed", type=int, default=12345, help="seed of the virtual subject's session (default 12345)")
    p.add_argument("--snr", type=float, default=None, help="virtual subject signal-to-noise factor (default 1)")
    p.add_argument("--rate", type=float, default=None, help="stimuli per second (default 2)")
    p.add_argument("--montage", default=None, metavar="NAME[:CH,...]",
                   help="the virtual subject's cap (default: the standard cap with the bundle's channels)")
    p.add_argument("--sfreq", type=float, default=None,
                   help="the virtual subject's sampling rate (default: the bundle's)")

    p = sub.add_parser("live", help="live pipeline on a real source")
    p.add_argument("--source", required=True,
                   help="lsl[:NAME] (default NAME: the first stream of type EEG) | brainflow:BOARD (required)")
    p.add_argument("--units", choices=("uV", "mV", "V"), default=None,
                   help="the EEG's unit, overriding the stream's channel metadata "
                        "(default: the metadata's units, else volts)")
    p.add_argument("--board-param", action="append", default=[], metavar="KEY=VALUE",
                   help="BrainFlowInputParams field (serial_port, file, master_board...); "
                        "repeatable, over the config's [acquisition] brainflow_params (default: none)")
    _add_dejitter_option(p)
    _add_live_options(p)

    p = sub.add_parser("replay", help="stream a recorded session over LSL and run the live pipeline on it")
    p.add_argument("session", metavar="SESSION",
                   help="session directory, .fif file, or .xdf file[,eeg=NAME][,markers=NAME][,units=uV]")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1: real time)")
    _add_dejitter_option(p)
    _add_live_options(p)

    p = sub.add_parser("record", help="record a calibration session (EEG + markers to FIF; no bundle)")
    p.add_argument("--source", required=True,
                   help="lsl[:NAME] | brainflow:BOARD | virtual[:MONTAGE] (the virtual subject) (required)")
    p.add_argument("--out", default=_run_folder("record"), metavar="DIR",
                   help="new session directory (default: a new runs/record-YYYYmmdd-HHMMSS)")
    p.add_argument("--markers", default=None, metavar="NAME",
                   help="LSL marker stream name (default: the first of type Markers; BrainFlow: "
                        "the board's marker channel)")
    p.add_argument("--seconds", type=float, default=None,
                   help="stop after S seconds (default: no limit; without --trials, stop with Ctrl+C)")
    p.add_argument("--trials", type=int, default=None,
                   help="stop after N trials (stimulus markers), plus --tail seconds (default: no limit; "
                        "with --present: each image once)")
    p.add_argument("--tail", type=float, default=1.0,
                   help="seconds recorded after the last trial (default 1)")
    p.add_argument("--marker-pattern", default=None, type=_marker_pattern, metavar="REGEX",
                   help="count only markers matching this regex (named group 'id') as trials "
                        "(default: every marker)")
    _add_event_options(p)
    p.add_argument("--present", action="store_true",
                   help="show the stimuli and send the markers (needs a display; default off: markers "
                        "come from --markers, or from the virtual subject's own schedule)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="with --present: folder of images (sub-folders = classes); default demo set")
    p.add_argument("--on", type=float, default=0.5, help="seconds each image is shown (default 0.5)")
    p.add_argument("--off", type=float, default=0.0, help="blank seconds between images (default 0)")
    p.add_argument("--order", choices=("random", "block"), default="random",
                   help="stimulus order: 'random' (shuffled) or 'block' (a class at a time; "
                        "default random)")
    p.add_argument("--seed", type=int, default=0, help="schedule (and virtual subject) seed (default 0)")
    p.add_argument("--screen", type=int, default=None,
                   help="screen index for --present (default: the primary screen)")
    p.add_argument("--windowed", action="store_true", help="--present in a window, not full screen")
    p.add_argument("--photodiode-patch", action="store_true",
                   help="--present with the photodiode patch (white in the bottom-left corner while a "
                        "stimulus is shown), for the light sensor that --photodiode CHANNEL reads")
    _add_display_options(p)
    p.add_argument("--montage", default=None, metavar="MONTAGE",
                   help="virtual subject's cap: MNE standard montage or 'NAME:CH1,CH2,...' "
                        "(default biosemi128)")
    p.add_argument("--sfreq", type=float, default=None, help="virtual subject's rate (default 1000)")
    p.add_argument("--snr", type=float, default=1.0, help="virtual subject's signal-to-noise factor (default 1)")
    p.add_argument("--units", choices=("uV", "mV", "V"), default=None,
                   help="the EEG's unit, overriding the stream's channel metadata "
                        "(default: the metadata's units, else volts)")
    p.add_argument("--board-param", action="append", default=[], metavar="KEY=VALUE",
                   help="BrainFlowInputParams field; repeatable (default: none)")
    _add_dejitter_option(p)
    p.add_argument("--config", default=None, metavar="FILE", help=_config_help(("acquisition",)))

    p = sub.add_parser("present", help="show stimuli full screen and push LSL markers")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--images", metavar="DIR",
                   help="folder of images (sub-folders = classes; default: the demo set)")
    g.add_argument("--demo-set", action="store_true", help="the procedural demo set (default)")
    p.add_argument("--on", type=float, default=0.5, help="seconds each image is shown (default 0.5)")
    p.add_argument("--off", type=float, default=0.0, help="blank seconds between images (default 0)")
    p.add_argument("--order", choices=("random", "block"), default="random",
                   help="stimulus order: 'random' (shuffled) or 'block' (a class at a time; "
                        "default random)")
    p.add_argument("--trials", type=int, default=None,
                   help="number of stimuli shown (default: each image of the set once)")
    p.add_argument("--screen", type=int, default=None,
                   help="screen index for full screen (default: the primary screen)")
    p.add_argument("--windowed", action="store_true", help="not full screen")
    p.add_argument("--photodiode-patch", dest="photodiode", action="store_true",
                   help="a white patch in the bottom-left corner while a stimulus is shown (black "
                        "otherwise), for a light sensor (--photodiode CHANNEL on the EEG side)")
    p.add_argument("--allow-unlocked", action="store_true",
                   help="when the display's flips are not locked to its refresh (Xvfb, no vsync), "
                        "time the stimuli by the clock instead of refusing")
    _add_display_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the random order (default 0)")
    p.add_argument("--stream-name", default="bci-app-markers",
                   help="name of the LSL marker stream sent (default bci-app-markers)")

    p = sub.add_parser("simulate", help="write a simulated session (raw EEG + annotations) to FIF")
    p.add_argument("--out", required=True, metavar="FILE.fif", help="the FIF file written (required)")
    p.add_argument("--trials", type=int, default=400, help="number of stimuli (default 400)")
    p.add_argument("--design", choices=("rapid", "block"), default="rapid",
                   help="'rapid' (random order) or 'block' (a class at a time, with the slow drift "
                        "of block designs; default rapid)")
    p.add_argument("--seed", type=int, default=0, help="seed of the schedule and the signal (default 0)")
    p.add_argument("--snr", type=float, default=1.0, help="signal-to-noise factor (default 1)")
    p.add_argument("--on", type=float, default=0.5, help="stimulus onset asynchrony (s; default 0.5)")
    p.add_argument("--montage", default=None, metavar="MONTAGE",
                   help="the cap: an MNE standard montage (biosemi64, standard_1020, ...) or a "
                        "subset 'standard_1020:Fz,Cz,Pz,O1,Oz,O2' (default biosemi128)")
    p.add_argument("--sfreq", type=float, default=None, help="sampling rate in Hz (default 1000)")
    p.add_argument("--model", choices=("attributes", "components", "subject"), default="attributes",
                   help="generative structure: 'attributes' (alias 'subject'; responses built from "
                        "the images' shape, colour and layout, the demo's subject) or 'components' "
                        "(each class a random mixture of shared ERP components, drift and a bad "
                        "channel) (default attributes)")
    p.add_argument("--classes", type=int, default=None, metavar="K",
                   help="show only K of the 40 classes, spread over shapes and colours "
                        "(default all 40)")

    p = sub.add_parser("train", help="train a model bundle")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="training data (required): synthetic[:N], spampinato:EEG.pth[,SPLITS.pth], "
                        "things-eeg2:DIR, session:FILE_OR_DIR")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory written (required)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="folder of the stimulus images (default: the demo set's procedural images)")
    p.add_argument("--config", default=None, metavar="FILE", help=_config_help(_train_tables()))
    p.add_argument("--stages", default=None, help="comma-separated subset of encoder,gan,semantic,refiner,baseline (default: all)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of every trained stage (default: each stage's epochs in the config)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto: CUDA when available)")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: [train] seed, 0)")
    p.add_argument("--resume", action="store_true", help="resume from checkpoints in BUNDLE")
    p.add_argument("--holdout-classes", default=None, metavar="A,B,...",
                   help="classes (names or indices) no model component trains on: their trials are test "
                        "trials, scored as zero-shot by evaluate; 'none' holds out nothing (default: "
                        "[data] holdout_classes, else the data set's own: THINGS-EEG2's test concepts)")
    p.add_argument("--marker-pattern", default=None, metavar="REGEX", type=_marker_pattern,
                   help="regex whose named group 'id' maps the session's marker strings to "
                        f"stimulus ids (as on live; default '{_default_pattern()}')")
    _add_event_options(p)
    p.add_argument("--json", action="store_true",
                   help="print the training record (metrics, selection, times) as JSON after the summary "
                        "(it is always in BUNDLE/config.json, key 'training')")

    p = sub.add_parser("evaluate", help="paper metrics, baselines, leakage probe, HTML report")
    p.add_argument("--bundle", required=True, help="model bundle directory, or 'demo' (required)")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="test data (required): synthetic[:N], spampinato:EEG.pth[,SPLITS.pth], "
                        "things-eeg2:DIR, session:FILE_OR_DIR")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for metrics.json and report.html (required)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="folder of the stimulus images (default: the demo set's procedural images)")
    p.add_argument("--ways", type=int, default=None,
                   help="N-way (default: the number of classes in the data, at most 50)")
    p.add_argument("--topk", type=int, default=1, help="k of top-k accuracy (default 1)")
    p.add_argument("--draws", type=int, default=100, help="random N-way draws per trial (default 100)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto: CUDA when available)")
    p.add_argument("--ablation", action="store_true",
                   help="also run the Table 3 ablation rows: three more passes over the test trials, each "
                        "row scored and its images dropped, so memory stays that of the run without it "
                        "(the recording plus its windows: about 2 GB for synthetic:2000)")
    p.add_argument("--save-images", action="store_true", help="write DIR/images/NNNN_seen.png, NNNN_recon.png at the SSIM resolution")
    p.add_argument("--weights-dir", default=None, metavar="DIR",
                   help="folder holding torchvision's inception_v3_google-*.pth / alexnet-owt-*.pth "
                        "(Inception Score, AlexNet(2)/(5); default: $TORCH_HOME/hub/checkpoints only)")
    p.add_argument("--marker-pattern", default=None, metavar="REGEX", type=_marker_pattern,
                   help="regex whose named group 'id' maps the session's marker strings to "
                        f"stimulus ids (as on live; default '{_default_pattern()}')")
    _add_event_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the N-way draws and the refiner noise (default 0)")
    p.add_argument("--steps", type=int, default=None, help="refiner steps (default: the bundle's)")
    p.add_argument("--strength", type=float, default=None, help="refiner strength (default: the bundle's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="refiner classifier-free guidance weight (default: the bundle's; <= 1: none)")

    p = sub.add_parser("bench", help="latency/throughput benchmark, JSON out")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--arch", choices=("demo", "sd-turbo"), default="demo",
                   help="refiner timed: the bundle's demo refiner or SD-Turbo (default demo)")
    p.add_argument("--mode", choices=("pipeline", "acquisition", "window"), default="pipeline",
                   help="'pipeline' (the live path), 'acquisition' (the EEG path under fault profiles) "
                        "or 'window' (the window's redraw rate) (default pipeline)")
    p.add_argument("--trials", type=int, default=100, help="trials timed (default 100)")
    p.add_argument("--rate", type=float, default=5.0, help="trials per second offered (default 5)")
    p.add_argument("--steps", type=int, default=None,
                   help="refiner steps (default: the bundle's; sd-turbo: 1)")
    p.add_argument("--resolution", type=int, default=None,
                   help="image side in pixels (default: the bundle's; sd-turbo: 512)")
    p.add_argument("--bundle", default="demo", help="model bundle directory, or 'demo' (default demo)")
    p.add_argument("--compile", action="store_true",
                   help="sd-turbo: torch.compile the UNet (mode reduce-overhead: CUDA graphs on a GPU)")
    p.add_argument("--tiny", action="store_true",
                   help="sd-turbo: the same architecture with narrow channels (CPU dry run of the GPU bench)")
    p.add_argument("--no-trace", action="store_true",
                   help="run the demo refiner eagerly instead of through traced graphs (for comparison)")
    p.add_argument("--profiles", default=None, metavar="NAME,...",
                   help="--mode acquisition: the fault profiles to run (default all: clean, bursty, "
                        "jitter, drift, late, chunks, wireless, gap)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="--mode acquisition: push the simulated amplifier X times faster than real time "
                        "(default 1)")
    p.add_argument("--out", required=True, metavar="FILE.json", help="the JSON result written (required)")

    p = sub.add_parser("doctor", help="what is installed and found")
    p.add_argument("--weights-dir", default=None, metavar="DIR",
                   help="also look for evaluate's Inception/AlexNet checkpoints here, as "
                        "`evaluate --weights-dir` does (default: $TORCH_HOME/hub/checkpoints only)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command in _LSL_COMMANDS and not args.verbose:
        from bci_app.acquisition.lsl_config import quiet_liblsl

        quiet_liblsl()  # no liblsl start-up lines (a lab's own lsl_api.cfg still decides)
    module, func = _COMMANDS[args.command]
    fn = getattr(importlib.import_module(module), func)
    try:
        if args.command in ("train", "evaluate"):
            _fold_event_options(args)
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
