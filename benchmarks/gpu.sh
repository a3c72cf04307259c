#!/usr/bin/env bash
# The GPU latency benchmark, in one call (under 8 minutes on one H100/H200):
# SD-Turbo's architecture at 512 px, 1 denoising step, tiny autoencoder (TAESD class),
# fp16, eager and with torch.compile (mode reduce-overhead: CUDA graphs), plus the demo
# bundle on the same GPU. Random-init weights unless SD-Turbo is in the local HF cache
# (the JSON says which: "weights"). Figures go to docs/benchmarks.md with date and device.
#
#   benchmarks/gpu.sh [OUT_DIR]            on a CUDA machine
#   DRY_RUN=1 benchmarks/gpu.sh [OUT_DIR]  on a CPU: same commands, narrow-channel UNet at 64 px
#
# Wheels for packages the GPU machine lacks (diffusers, mne, pylsl...) may be put in .whl/;
# they are installed into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench-gpu}}
mkdir -p "$out"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ "${DRY_RUN:-0}" = 1 ]; then
  dev=cpu; sd=(--tiny --resolution 64 --trials 4 --rate 0.5); demo=(--trials 10 --rate 2)
else
  dev=cuda; sd=(--resolution 512 --trials 200 --rate 10); demo=(--trials 200 --rate 10)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.csv"
fi
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
bench() { python3 -m bci_app.cli bench --device "$dev" "$@"; }
bench --arch sd-turbo --steps 1 "${sd[@]}" --out "$out/sd_turbo_eager.json"
bench --arch sd-turbo --steps 1 --compile "${sd[@]}" --out "$out/sd_turbo_compiled.json"
bench --arch demo "${demo[@]}" --out "$out/demo.json"
python3 - "$out" <<'PY'
import json, sys, pathlib
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    d = json.loads(f.read_text())
    print(f"{f.stem:18s} {d['device']:40s} {d['resolution']:>4} px steps {d['steps']} "
          f"p50 {d['latency_ms']['p50']} ms p95 {d['latency_ms']['p95']} ms floor p50 "
          f"{d['model_floor_ms']['p50']} ms overhead {d['overhead_ratio']} x, "
          f"{d['throughput_per_s']}/s, weights {d['weights']}, compile {d.get('compile')}")
PY
