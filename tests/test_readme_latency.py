"""benchmarks/readme_latency.py: the README's latency item written from a real bench run."""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("readme_latency", ROOT / "benchmarks" / "readme_latency.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_readme_latency_item_comes_from_the_run(tmp_path):
    script = _script()
    readme, out = tmp_path / "README.md", tmp_path / "latency.json"
    shutil.copy(ROOT / "README.md", readme)  # the real README's block is the one replaced
    assert script.main(["--runs", "2", "--trials", "4", "--rate", "4", "--json", str(out),
                        "--readme", str(readme)]) == 0
    m = json.loads(out.read_text())
    assert len(m["traced"]) == 2 and m["eager"]["arch"] == "demo" and m["cpu"] == script.cpu_model()
    text = readme.read_text()
    block = text[text.index(script.BEGIN):text.index(script.END)]
    assert m["date"] in block and m["cpu"] in block and f"torch {m['torch']}" in block
    p95 = statistics.median(r["latency_ms"]["p95"] for r in m["traced"])
    assert f"p95 is {p95:.0f} ms" in block and f"p95 to {m['eager']['latency_ms']['p95']:.0f} ms" in block
    # everything outside the block is untouched
    before = (ROOT / "README.md").read_text()
    assert text[:text.index(script.BEGIN)] == before[:before.index(script.BEGIN)]
    assert text[text.index(script.END):] == before[before.index(script.END):]
