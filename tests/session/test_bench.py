"""`bci-app bench` writes the contract JSON from a real (short) pipeline run."""

from __future__ import annotations

import json

from bci_app.cli import main

KEYS = {"device", "arch", "resolution", "steps", "trials", "latency_ms", "model_floor_ms",
        "overhead_ratio", "throughput_per_s", "weights"}


def test_bench_pipeline_json(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--device", "cpu", "--trials", "10", "--rate", "5", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert KEYS <= set(d)
    assert d["arch"] == "demo" and d["trials"] == 10 and d["device"].startswith("cpu")
    assert d["weights"] in ("pretrained", "random-init")
    assert 0 < d["model_floor_ms"]["p50"] <= d["latency_ms"]["p50"] * 1.5
    assert d["latency_ms"]["p50"] <= d["latency_ms"]["p95"]
    assert abs(d["overhead_ratio"] - d["latency_ms"]["p50"] / d["model_floor_ms"]["p50"]) < 0.01
    assert d["reconstructed"] + d["dropped"] + sum(d["rejected"].values()) == 10
    assert d["throughput_per_s"] > 0
    # the figures name the sampler that ran: the bundle's steps, through traced graphs
    from bci_app.models.bundle import resolve_bundle_path

    saved = json.loads((resolve_bundle_path("demo") / "refiner" / "refiner_config.json").read_text())
    assert d["steps"] == saved["steps"] and d["guidance_scale"] == saved["guidance_scale"]
    unet = d["refiner_trace"]["demo UNet"]
    assert unet["graphs"] >= 1 and unet["fallbacks"] == 0 and unet["traced_calls"] > unet["eager_calls"]


def test_bench_window_mode_json(tmp_path, monkeypatch):
    """`bench --mode window`: redraws per second of the real window (offscreen) fed 128
    channels at 1 kHz with markers; a figure, not a pass/fail threshold (2 shared cores)."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    out = tmp_path / "window.json"
    assert main(["bench", "--mode", "window", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["mode"] == "window" and d["traces"] == 128 and d["visible_rows"] == 32
    assert d["fps"] > 5 and d["cpu_ms_per_frame"] > 0 and d["display_dropped"] == 0


def test_bench_acquisition_fault_profiles(tmp_path):
    """`bench --mode acquisition`: per fault profile, the windows' alignment error against the
    true onsets and the false gaps, with dejitter (the goal: within a sample, none) and
    without (the stamps as they come: false gaps)."""
    out = tmp_path / "acq.json"
    assert main(["bench", "--mode", "acquisition", "--profiles", "clean,gap", "--trials", "20",
                 "--speed", "2", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["mode"] == "acquisition" and set(d["profiles"]) == {"clean", "gap"}
    for name, p in d["profiles"].items():
        dj = p["dejitter"]
        assert dj["trials"] == 20 and dj["false_gaps"] == 0 and dj["missed_gaps"] == 0, name
        assert dj["align_error_max_samples"] <= 1 and dj["align_error_ms"]["p99"] <= 1.0, name
        assert dj["samples_lost"] == dj["samples_dropped"] == p["samples_dropped"], name
        assert dj["meets_goal"], name
    assert d["profiles"]["gap"]["samples_dropped"] == 50
    raw = d["profiles"]["gap"]["raw"]
    assert raw["false_gaps"] > 0 and raw["samples_lost"] > 1000 and not raw["meets_goal"]
    # the clean profile's figures stay where they were
    assert d["trials"] == 20 and d["samples_lost"] == 0 and d["push_to_trial_ms"]["p50"] > 0
