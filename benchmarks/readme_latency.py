"""The README's latency figures, from a run on this machine, with its date and CPU.

Runs ``bci-app bench --device cpu --arch demo --trials 100 --rate 5`` ``--runs`` times
(traced refiner, as shipped) and once with ``--no-trace`` (eager diffusers modules), writes
every run's bench JSON with the date, the CPU model, the cores and the torch version to
``docs/readme_latency.json``, and rewrites the README's "CPU overhead" item (between
``<!-- latency:begin -->`` and ``<!-- latency:end -->``) from that JSON. Takes about
3 minutes; run it on an otherwise idle machine (other jobs on the cores are measured too)::

    python benchmarks/readme_latency.py                  # measure, write the JSON, update README.md
    python benchmarks/readme_latency.py --render-only    # README.md from the JSON as it is
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- latency:begin -->", "<!-- latency:end -->"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench(args: list[str], out: Path) -> dict[str, Any]:
    """One ``bci-app bench`` run in a subprocess; its JSON."""
    cmd = [sys.executable, "-m", "bci_app.cli", "bench", *args, "--out", str(out)]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def measure(runs: int, trials: int, rate: float) -> dict[str, Any]:
    import torch

    base = ["--device", "cpu", "--arch", "demo", "--trials", str(trials), "--rate", f"{rate:g}"]
    with tempfile.TemporaryDirectory() as tmp:
        traced = [bench(base, Path(tmp) / f"traced{i}.json") for i in range(runs)]
        eager = bench([*base, "--no-trace"], Path(tmp) / "eager.json")
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "command": "bci-app bench " + " ".join(base),
        "traced": traced,
        "eager": eager,
    }


def render(m: dict[str, Any]) -> str:
    """The README's "CPU overhead" item, every figure from ``m`` (the JSON)."""
    p95 = [r["latency_ms"]["p95"] for r in m["traced"]]
    ratio = [r["overhead_ratio"] for r in m["traced"]]
    eager = m["eager"]

    def spread(v: list[float], fmt: str) -> str:
        return f"median of {len(v)} runs; {format(min(v), fmt)}-{format(max(v), fmt)}" if len(v) > 1 else "one run"

    return (
        f"- **CPU overhead.** Measured on {m['date']} on {m['cores']} cores of {m['cpu']} (torch "
        f"{m['torch']}) by `python benchmarks/readme_latency.py` (`{m['command']}`; every run in "
        f"`docs/readme_latency.json`): the live demo's end-to-end p95 is {statistics.median(p95):.0f} ms "
        f"({spread(p95, '.0f')} ms) and the overhead over bare model time "
        f"{statistics.median(ratio):.2f}x ({spread(ratio, '.2f')}x); the simulated amplifier "
        f"shares the cores with inference. Eager diffusers modules (`--no-trace`) take the p95 to "
        f"{eager['latency_ms']['p95']:.0f} ms (ratio {eager['overhead_ratio']:.2f}x)."
    )


def update_readme(readme: Path, text: str) -> None:
    """Replace what stands between the latency markers of ``readme`` with ``text``."""
    doc = readme.read_text(encoding="utf-8")
    block = re.compile(re.escape(BEGIN) + r"\n.*?\n" + re.escape(END), re.S)
    if len(block.findall(doc)) != 1:
        raise SystemExit(f"{readme}: expected one block between {BEGIN} and {END} lines")
    readme.write_text(block.sub(lambda _: f"{BEGIN}\n{text}\n{END}", doc), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="traced bench runs (default 3)")
    ap.add_argument("--trials", type=int, default=100, help="trials per run (default 100)")
    ap.add_argument("--rate", type=float, default=5.0, help="trials per second offered (default 5)")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "readme_latency.json",
                    help="the figures written, and read by --render-only (default docs/readme_latency.json)")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the README updated (default README.md)")
    ap.add_argument("--render-only", action="store_true", help="update the README from the JSON; run nothing")
    args = ap.parse_args(argv)
    if not args.render_only:
        if args.runs < 1:
            raise SystemExit(f"--runs must be >= 1, got {args.runs}")
        m = measure(args.runs, args.trials, args.rate)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    text = render(json.loads(args.json.read_text(encoding="utf-8")))
    update_readme(args.readme, text)
    print(f"updated {args.readme}:\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
