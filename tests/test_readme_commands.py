"""The README's commands: every ``bci-app SUBCOMMAND --option`` it shows exists, and the
walkthrough script (benchmarks/readme_walkthrough.py) runs a README's code blocks as written."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import re
import sys
from pathlib import Path

from bci_app.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@functools.cache
def _walkthrough():
    spec = importlib.util.spec_from_file_location("readme_walkthrough", ROOT / "benchmarks" / "readme_walkthrough.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def shown_invocations(text: str) -> list[tuple[str, str]]:
    """``(subcommand, the text up to the next command)`` for every ``bci-app SUBCOMMAND`` the
    README shows: in its code blocks and in its inline code (a span may wrap lines)."""
    texts = [c.text for c in _walkthrough().shown_commands(text)]
    texts += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", text)]
    found = []
    for t in texts:
        for m in re.finditer(r"\bbci-app ([a-z][a-z-]*)(.*?)(?=\bbci-app |$)", t):
            rest = re.split(r" && | # |\s#|;", m.group(2))[0]  # the next step or a comment is not this command's
            found.append((m.group(1), rest))
    return found


def test_every_option_the_readme_shows_exists():
    subs = _subparsers()
    shown = shown_invocations(README.read_text(encoding="utf-8"))
    assert len({name for name, _ in shown}) == len(subs), "the README does not show every subcommand"
    wrong = []
    for name, rest in shown:
        if name not in subs:
            wrong.append(f"bci-app {name}: no such subcommand")
            continue
        known = {s for a in subs[name]._actions for s in a.option_strings}
        wrong += [f"bci-app {name} {opt}" for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest)
                  if opt not in known]
    assert not wrong, f"README.md shows options that --help does not have: {sorted(set(wrong))}"


def test_the_options_check_sees_inline_code_and_code_blocks():
    text = ("Record with `bci-app record --source virtual\n--seconds 5 --no-such-flag`.\n\n"
            "    bci-app demo --headless   # or: bci-app replay DIR --speed 2\n")
    assert shown_invocations(text) == [("demo", " --headless  "), ("replay", " DIR --speed 2"),
                                       ("record", " --source virtual --seconds 5 --no-such-flag")]


def test_walkthrough_extracts_the_code_blocks_commands():
    w = _walkthrough()
    text = ("Intro `bci-app demo` inline is not run.\n\n"
            "    bci-app simulate --out a.fif \\\n        --trials 3\n"
            "    [refiner]\n    type = \"demo\"\n\n"
            "```bash\nQT_QPA_PLATFORM=offscreen python -m pytest -q\n```\n")
    shown = w.shown_commands(text)
    assert [(c.line, c.text) for c in shown] == [
        (3, "bci-app simulate --out a.fif --trials 3"),
        (9, "QT_QPA_PLATFORM=offscreen python -m pytest -q"),
    ]


def test_walkthrough_runs_skips_and_reports(tmp_path):
    """Real commands in a copy of the checkout: one runs, one fails, and what depends on the
    failed one, needs internet, is long under --fast or only installs is skipped with why."""
    w = _walkthrough()
    readme = tmp_path / "README.md"
    readme.write_text(
        "    bci-app simulate --out runs/s.fif --trials 3 --seed 1\n"
        "    python -c \"import mne; print(mne.io.read_raw_fif('runs/s.fif', verbose='error').n_times)\"\n"
        "    bci-app simulate --out runs/t.fif --trials 0\n"
        "    python -c \"open('runs/t.fif')\"\n"
        "    hf download madebyollin/taesd\n"
        "    bci-app train --data session:runs/s.fif --out runs/b\n"
        "    pip install no-such-package-here && python -c \"print('after the install step')\"\n"
        "    pip install no-such-package-here\n",
        encoding="utf-8",
    )
    out = tmp_path / "walk.json"
    rc = w.main(["--readme", str(readme), "--fast", "--timeout", "300", "--json", str(out)])
    results = json.loads(out.read_text())["results"]
    status = [(r["line"], r["status"]) for r in results]
    assert status == [(1, "ok"), (2, "ok"), (3, "failed"), (4, "skipped"), (5, "skipped"), (6, "skipped"),
                      (7, "ok"), (8, "skipped")], results
    assert rc == 1
    assert results[1]["output_tail"][-1].isdigit()  # the FIF the first command wrote, read back
    assert "--trials" in "\n".join(results[2]["output_tail"]) and results[2]["returncode"] == 2
    assert "runs/t.fif" in results[3]["reason"] and "line 3" in results[3]["reason"]
    assert "internet" in results[4]["reason"]
    assert results[5]["reason"].startswith("long:")
    assert results[6]["ran"] == "python -c \"print('after the install step')\""
    assert results[6]["output_tail"] == ["after the install step"]
    assert "installs packages" in results[7]["reason"]


def test_walkthrough_skip_names_its_regex_and_what_depends_on_it(tmp_path):
    """``--skip REGEX`` leaves a command out with the regex as the reason, and a later command
    that reads its output is skipped for that; the others still run."""
    w = _walkthrough()
    shown = [w.Shown(1, "bci-app simulate --out runs/a.fif --trials 2 --seed 1"),
             w.Shown(2, "python -c \"open('runs/a.fif')\""),
             w.Shown(3, "python -c \"print(40 + 2)\"")]
    results = w.walk(shown, tmp_path, fast=False, venv_dir=None, timeout=120, skip=(r"simulate",))
    assert [r.status for r in results] == ["skipped", "skipped", "ok"]
    assert results[0].reason == "--skip 'simulate': run on its own"
    assert "runs/a.fif" in results[1].reason and "line 1" in results[1].reason
    assert results[2].output_tail == ["42"]
    assert not (tmp_path / "runs").exists()
