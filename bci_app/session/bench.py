"""``bci-app bench``: latency and throughput of the live path, JSON out.

``--mode acquisition`` delegates to :func:`bci_app.acquisition.bench.run_acquisition_bench`
(the EEG path alone: latency, and window alignment and false gaps under the fault profiles
``--profiles``, with and without dejitter; ``--speed`` pushes faster than real time).

``--mode pipeline`` (default) runs the real live path over loopback LSL: an EEG stream
(the virtual subject), a marker schedule at ``--rate`` trials/s, the acquisition thread
with the bundle's epocher, the inference worker; it measures end-to-end latency (last
sample of the window received -> image ready) and per-stage times for ``--trials``
trials. Then, in the same process and on the same modules, it times the bare forward
passes (``Reconstructor.reconstruct`` on the same windows, nothing else running):
``model_floor_ms``; ``overhead_ratio`` = latency p50 / floor p50.

``--arch sd-turbo`` swaps the bundle's refiner for SD-Turbo (512x512 by default, 1 step,
AutoencoderTiny): the pretrained weights when found locally, else the real
architecture with random weights (``"weights": "random-init"``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from bci_app.config import InferenceConfig
from bci_app.messages import LATENCIES
from bci_app.models.device import resolve_device
from bci_app.session.realtime import realtime_settings
from bci_app.session.report import percentiles

log = logging.getLogger(__name__)


def _sd_turbo_refiner(rec: Any, resolution: int, steps: int, device: Any, dtype: Any,
                      tiny: bool = False) -> tuple[Any, str]:
    from bci_app.models import refiners as refiner_mod

    if not tiny:
        try:
            ref = refiner_mod.DiffusersImg2ImgRefiner.from_pretrained(
                "stabilityai/sd-turbo", kind="sd-turbo", device=device, dtype=dtype,
                resolution=resolution, steps=steps,
            )
            return ref, "pretrained"
        except FileNotFoundError as err:  # weights absent (no downloads here): same architecture
            log.info("SD-Turbo weights not found locally (%s); using random-init weights", err)
    ref = refiner_mod.build_sd_turbo_random(resolution=resolution, tiny_vae=True, device=device,
                                            dtype=dtype, steps=steps, tiny=tiny)
    return ref, "random-init"


def _semantic_for(rec: Any, refiner: Any) -> Any:
    """A semantic head whose output fits the refiner's ``prompt_embeds`` ([B, 77, 1024] for
    SD-Turbo). The bundle's own head predicts its text encoder's embeddings (MiniLM for the
    demo): for timing, a random-init head of the refiner's shape takes its place."""
    from bci_app.models.semantic import SemanticHead

    if (rec.semantic.seq_len, rec.semantic.embed_dim) == (refiner.seq_len, refiner.dim):
        return rec.semantic
    head = SemanticHead(rec.semantic.in_features, seq_len=refiner.seq_len, embed_dim=refiner.dim)
    return head.to(rec.device, rec.dtype).eval()


def build_bench_reconstructor(args: Any) -> tuple[Any, dict[str, Any]]:
    from bci_app.models.reconstructor import Reconstructor

    device = resolve_device(args.device)
    rec = Reconstructor.from_bundle(args.bundle, device=device, steps=args.steps,
                                    load_refiner=args.arch == "demo")
    meta: dict[str, Any] = {"weights": "pretrained"}
    if args.arch == "sd-turbo":
        res = int(args.resolution or 512)
        rec.refiner, meta["weights"] = _sd_turbo_refiner(rec, res, int(args.steps or 1), rec.device,
                                                         rec.dtype, tiny=bool(getattr(args, "tiny", False)))
        rec.semantic = _semantic_for(rec, rec.refiner)
        rec.steps = int(args.steps or 1)
        if getattr(args, "compile", False):
            rec.refiner.compile("reduce-overhead")
        meta["resolution"] = res
        meta["compile"] = "reduce-overhead" if getattr(args, "compile", False) else None
    else:
        rcfg = rec.config.get("refiner") or {}
        meta["resolution"] = int(args.resolution or rcfg.get("resolution") or
                                 getattr(rec.generator, "resolution", 0) or 0)
        if getattr(rec.refiner, "weights", None) == "random-init":
            meta["weights"] = "random-init"
        if getattr(args, "no_trace", False) and hasattr(rec.refiner, "set_trace"):
            rec.refiner.set_trace(False)
    meta["steps"] = int(rec.steps or getattr(rec.refiner, "steps", None)
                        or (rec.config.get("refiner") or {}).get("steps") or 1)
    return rec, meta


def run_pipeline_bench(args: Any) -> dict[str, Any]:
    """Run the live path for ``args.trials`` trials at ``args.rate``; return the bench dict."""
    from bci_app.acquisition.markers import LSLMarkerSource
    from bci_app.acquisition.sources import LSLSource
    from bci_app.acquisition.virtual_subject import VirtualSubject
    from bci_app.session.commands import Pipeline
    from bci_app.session.report import SessionReport
    from bci_app.stimuli import DemoStimulusSet
    from bci_app.ui.presenter import MarkerSchedulePublisher, make_marker_outlet, schedule_for

    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    if args.rate <= 0:
        raise ValueError(f"--rate must be > 0 trials per second, got {args.rate}")
    rec, meta = build_bench_reconstructor(args)
    stimuli = DemoStimulusSet()
    tag = uuid.uuid4().hex[:8]
    eeg_name, mk_name = f"bci-bench-eeg-{tag}", f"bci-bench-markers-{tag}"
    outlet = make_marker_outlet(mk_name, mk_name)
    subject = VirtualSubject(stimuli, seed=0, name=eeg_name, source_id=eeg_name, markers_name=mk_name)
    schedule = schedule_for(stimuli, args.trials, on=1.0 / args.rate, off=0.0, order="random", seed=0, start=1.0)
    source = LSLSource(name=eeg_name, source_id=eeg_name, n_channels=len(rec.spec.ch_names), sfreq=rec.spec.sfreq)
    report = SessionReport(keep_results=True)  # the floor re-runs the same windows
    cfg = InferenceConfig(queue_size=8, policy="drop_oldest", warmup=3)
    pipe = Pipeline(source, LSLMarkerSource(name=mk_name), rec, inference=cfg, report=report)
    pub = None
    subject.start()
    try:
        pipe.start()
        pub = MarkerSchedulePublisher(schedule, outlet=outlet, wait_for_consumers=5.0).start()
        t_start = time.perf_counter()
        ok = pipe.wait_results(args.trials, float(schedule.onsets[-1]) + 60.0)
        t_run = time.perf_counter() - t_start
        if not ok:
            log.warning("only %d of %d trials got an outcome", pipe.n_results, args.trials)
    finally:
        if pub is not None:
            pub.stop()
        pipe.stop()
        subject.stop()

    res = [r for r in report.results if r.outcome == "reconstructed"]
    if not res:
        raise RuntimeError("no trial was reconstructed; see the log (-v) for the cause")
    e2e = [r.times_ms["end_to_end"] for r in res if "end_to_end" in r.times_ms]
    stages = {k: percentiles([r.times_ms[k] for r in res if k in r.times_ms])
              for k in (*LATENCIES, "queue")}
    ready = sorted(r.t_ready for r in res)
    span = ready[-1] - ready[0]
    throughput = (len(ready) - 1) / span if span > 0 else float("nan")

    # model floor: the same modules, same windows, bare forward passes, nothing else running
    # (under the same process settings as the live run, which the pipeline restored on stop)
    floor = []
    with realtime_settings(cpu_threads=cfg.cpu_threads, torch_threads=rec.device.type == "cpu"):
        for r in res[: min(len(res), 50)]:
            x = r.trial.data[None]
            t0 = time.perf_counter()
            rec.reconstruct(x)
            floor.append(1000.0 * (time.perf_counter() - t0))
    lat = percentiles(e2e)
    fl = percentiles(floor)
    out = {
        "device": str(rec.device) + (f" ({_device_name(rec.device)})" if _device_name(rec.device) else ""),
        "arch": args.arch,
        "resolution": meta["resolution"],
        "steps": meta["steps"],
        "trials": int(args.trials),
        "latency_ms": {"p50": lat["p50"], "p95": lat["p95"], "max": lat["max"]},
        "model_floor_ms": {"p50": fl["p50"], "p95": fl["p95"]},
        "overhead_ratio": round(lat["p50"] / fl["p50"], 3) if lat["p50"] and fl["p50"] else None,
        "throughput_per_s": round(throughput, 3),
        "weights": meta["weights"],
        "compile": meta.get("compile"),
        "architecture": "sd-turbo (narrow channels: dry run)" if getattr(args, "tiny", False) else args.arch,
        # beyond the contract: what a reader of the figures needs
        "offered_rate_per_s": float(args.rate),
        "capacity_per_s": round(1000.0 / fl["p50"], 2) if fl["p50"] else None,
        "reconstructed": len(res),
        "dropped": sum(1 for r in report.results if r.outcome == "dropped"),
        "rejected": report.counts()["rejected"],
        "stages_ms": stages,
        "wall_s": round(t_run, 2),
        "date": time.strftime("%Y-%m-%d"),
    }
    if getattr(rec.refiner, "guidance_scale", None) is not None:
        out["guidance_scale"] = float(rec.refine_settings().get("guidance_scale", rec.refiner.guidance_scale))
    if hasattr(rec.refiner, "trace_stats"):  # which path the refiner's figures measured
        out["refiner_trace"] = rec.refiner.trace_stats
    return out


def _device_name(device: Any) -> str:
    if getattr(device, "type", "") == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()


def run_bench(args: Any) -> int:
    """``bci-app bench``."""
    if getattr(args, "mode", "pipeline") == "acquisition":
        from bci_app.acquisition.bench import run_acquisition_bench

        return run_acquisition_bench(args)
    if getattr(args, "mode", "pipeline") == "window":
        fps = measure_window_fps()
        fps.pop("frame_ms", None)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"mode": "window", **fps}, indent=2) + "\n")
        print(json.dumps(fps))
        print(f"wrote {out}")
        return 0
    result = run_pipeline_bench(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("device", "arch", "latency_ms", "model_floor_ms",
                                             "overhead_ratio", "throughput_per_s", "dropped", "weights")}))
    print(f"wrote {out}")
    return 0


def measure_window_fps(seconds: float = 5.0, n_channels: int = 128, sfreq: float = 1000.0) -> dict[str, Any]:
    """Redraw rate of the live window under a realistic feed (:mod:`bci_app.ui.window_bench`)."""
    from bci_app.ui.window_bench import measure_window_fps as measure

    return measure(seconds=seconds, n_channels=n_channels, sfreq=sfreq)
