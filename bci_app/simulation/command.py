"""``bci-app simulate``: write a simulated session (raw EEG + annotations) to FIF."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from bci_app.simulation import resolve_model_name, simulate_raw
from bci_app.stimuli import DemoStimulusSet


def _check_out(path: Path) -> Path:
    name = path.name
    if not (name.endswith(".fif") or name.endswith(".fif.gz")):
        raise ValueError(
            f"--out {str(path)!r} is not a FIF file name; expected a path ending in "
            "'.fif' (MNE also accepts '_raw.fif' / '_eeg.fif'), e.g. session_eeg.fif"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"cannot create the folder {str(parent)!r} for --out: {err}") from None
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ValueError(
            f"cannot write --out {str(path)!r}: folder {str(parent)!r} is not writable"
        )
    if path.exists() and (path.is_dir() or not os.access(path, os.W_OK)):
        raise ValueError(f"cannot write --out {str(path)!r}: it exists and is not a writable file")
    return path


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate ``args.trials`` trials and save them to ``args.out`` (overwriting)."""
    out = _check_out(Path(args.out))
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    if args.snr < 0:
        raise ValueError(f"--snr must be >= 0, got {args.snr}")
    on = float(getattr(args, "on", 0.5))
    sfreq = float(getattr(args, "sfreq", None) or 1000.0)
    if sfreq <= 0:
        raise ValueError(f"--sfreq must be > 0 Hz, got {sfreq}")
    model = resolve_model_name(getattr(args, "model", None) or "attributes")
    classes = getattr(args, "classes", None)
    if classes is not None and not 1 <= classes <= DemoStimulusSet.n_classes:
        raise ValueError(
            f"--classes must be in 1..{DemoStimulusSet.n_classes}, got {classes}"
        )
    stimuli = DemoStimulusSet()
    raw = simulate_raw(
        args.trials, seed=args.seed, design=args.design, snr=args.snr, on=on, stimuli=stimuli,
        sfreq=sfreq, montage=getattr(args, "montage", None), model=model, classes=classes,
    )
    raw.save(out, overwrite=True, verbose="error")
    labels = [stimuli.label(d.removeprefix("stim/")) for d in raw.annotations.description]
    print(
        f"wrote {out}: {len(raw.annotations)} trials ({args.design} design, "
        f"{len(np.unique(labels))} classes, SOA {on:g} s), {len(raw.ch_names)} channels "
        f"({getattr(args, 'montage', None) or 'biosemi128'}) at {raw.info['sfreq']:g} Hz, {raw.times[-1]:.1f} s, seed {args.seed}, snr {args.snr:g}, "
        f"model {model}"
    )
    return 0
