"""README.md walked top to bottom: every shell command of its code blocks, run as written.

What a newcomer does from a fresh clone, as a script. The checkout's files (tracked, and
untracked ones git does not ignore: what a clone of this working tree holds) are copied
into a fresh temporary directory; the commands of the README's code blocks run there in
order, each with ``bash -c`` exactly as written and with a timeout; the script reports which
ran, which failed (with the end of their output) and which were skipped and why. Its exit
status is 1 when a command failed.

- By default the commands use the current Python environment: its ``bci-app``, importing
  the copied checkout (``PYTHONPATH``). The ``pip install`` steps of a command would change
  that environment: they are left out, and said so. ``--venv`` makes a fresh virtual
  environment in the temporary directory and runs them too (needs PyPI).
- :data:`NEEDS` lists what a command needs that this machine may lack (an amplifier on
  LSL, a CUDA GPU, internet): such commands are skipped with the reason.
- :data:`LONG` lists the commands that take minutes (training, recordings and replays in
  real time, the test suite); ``--fast`` skips them. A command that reads what a skipped
  or failed command writes (its ``--out``) is skipped too.
- ``QT_QPA_PLATFORM=offscreen``: nothing opens a window (``demo`` runs headless and says so).

Examples::

    python benchmarks/readme_walkthrough.py --list                 # the commands, nothing run
    python benchmarks/readme_walkthrough.py --fast                 # seconds-long commands only
    python benchmarks/readme_walkthrough.py --json runs/walk.json  # all: about 1 hour on 2 cores
    python benchmarks/readme_walkthrough.py --venv                 # in a fresh venv, installs included
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the programs a shown command may start with (after ``VAR=value`` assignments): a code-block
#: line that starts otherwise (a TOML table, a file's content) is not a command
PROGRAMS = ("bci-app", "python", "pip", "hf", "git", "cd", "bash")

#: what a command needs that this machine may lack: (regex on the command, reason); first match
NEEDS: tuple[tuple[str, str], ...] = (
    (r"--source lsl:MyAmp", "needs an amplifier streaming over LSL as 'MyAmp'"),
    (r"--device cuda|--arch sd-turbo", "needs a CUDA GPU (and SD-Turbo's weights in the Hugging Face cache)"),
    (r"\bhf download\b|\.download\(", "downloads from the Hugging Face Hub (needs internet)"),
    (r"load_state_dict_from_url", "downloads from download.pytorch.org (needs internet)"),
)

#: commands that take minutes (skipped with --fast): (regex on the command, how long and why)
LONG: tuple[tuple[str, str], ...] = (
    (r"-m pytest\b", "the test suite: about 12 minutes on 2 cores"),
    (r"\bbci-app train\b.*configs/demo\.toml", "trains the demo bundle: about 30 minutes on 2 cores"),
    (r"\bbci-app train\b", "trains a bundle: minutes on 2 cores"),
    (r"\bbci-app record\b", "records in real time (2 stimuli per second)"),
    (r"\bbci-app replay\b", "replays a session in real time"),
    (r"\bbci-app evaluate\b", "reconstructs and scores every test trial: minutes on 2 cores"),
)

_PROGRAM = "|".join(map(re.escape, PROGRAMS))
_COMMAND = re.compile(rf"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:{_PROGRAM})(?:\s|$)")


@dataclass
class Shown:
    """One command of the README: its first line number and its text as written."""

    line: int
    text: str


@dataclass
class Result:
    line: int
    command: str
    status: str  # "ok", "failed", "timeout", "skipped", or with --list "would run"
    reason: str = ""
    seconds: float = 0.0
    returncode: int | None = None
    ran: str = ""  # what ran, when it differs from the command (pip steps left out)
    output_tail: list[str] = field(default_factory=list)


def code_blocks(text: str) -> list[tuple[int, list[str]]]:
    """``(first line number, lines)`` of each code block: fenced (```), or indented by 4
    spaces after a blank line (Markdown's indented block)."""
    lines = text.splitlines()
    blocks: list[tuple[int, list[str]]] = []
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            blocks.append((i + 2, lines[i + 1 : j]))
            i = j + 1
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            blocks.append((i + 1, [line[4:] for line in lines[i:j]]))
            i = j
        else:
            i += 1
    return blocks


def shown_commands(text: str) -> list[Shown]:
    """Every shell command of the README's code blocks, in order (``\\``-continued lines joined)."""
    found: list[Shown] = []
    for first, block in code_blocks(text):
        k = 0
        while k < len(block):
            line, start = block[k].strip(), first + k
            while line.endswith("\\") and k + 1 < len(block):
                k += 1
                line = line[:-1].rstrip() + " " + block[k].strip()
            if _COMMAND.match(line):
                found.append(Shown(start, line))
            k += 1
    return found


def _match(table: tuple[tuple[str, str], ...], command: str) -> str | None:
    return next((why for pattern, why in table if re.search(pattern, command)), None)


def _names(command: str, path: Path) -> bool:
    """Whether ``command`` names ``path`` (as an argument, in ``session:PATH,...``, in code)."""
    return re.search(rf"(?<![\w./-]){re.escape(str(path))}(?![\w.-])", command) is not None


def _outputs(command: str) -> set[Path]:
    """What a command writes: the values of its ``--out`` and ``--record`` options."""
    words = shlex.split(command, comments=True)
    return {Path(words[i + 1]) for i, w in enumerate(words[:-1]) if w in ("--out", "--record")}


def _is_install(step: str) -> bool:
    return re.match(r"^(?:python -m )?pip install\b", step.strip()) is not None


def copy_checkout(dest: Path) -> None:
    """The checkout's files as a clone of this working tree holds them (git's view of it)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        raise SystemExit(f"{ROOT} is not a git checkout ({listed.stderr.decode().strip()}): the walkthrough "
                         "copies what a clone of it holds; run it from a clone")
    files = listed.stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():  # a tracked file deleted in the working tree is not there
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def environment(workdir: Path, venv_dir: Path | None) -> dict[str, str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if venv_dir is None:
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = str(workdir)
    else:
        env.pop("PYTHONPATH", None)
        env["VIRTUAL_ENV"] = str(venv_dir)
        env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(command: str, cwd: Path, env: dict[str, str], timeout: float) -> tuple[str, int | None, list[str], float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the command's whole process group
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        status = "timeout"
    tail = [line for line in out.replace("\r", "\n").splitlines() if line.strip()][-15:]
    return status, proc.returncode, tail, time.perf_counter() - t0


def walk(shown: list[Shown], workdir: Path, *, fast: bool, venv_dir: Path | None, timeout: float,
         dry_run: bool = False, skip: tuple[str, ...] = ()) -> list[Result]:
    """Run (or with ``dry_run`` only classify) the commands in ``workdir``, in order; a command
    matching a regex of ``skip`` is skipped (said so, with the regex)."""
    env = environment(workdir, venv_dir)
    missing: dict[Path, int] = {}  # outputs a skipped or failed command did not write -> its line
    results = []
    for cmd in shown:
        res = Result(cmd.line, cmd.text, "skipped")
        needs = [p for p in missing if _names(cmd.text, p)]
        steps = cmd.text.split(" && ")
        run = steps if venv_dir is not None else [s for s in steps if not _is_install(s)]
        if (why := _match(NEEDS, cmd.text)) is not None:
            res.reason = why
        elif (pattern := next((p for p in skip if re.search(p, cmd.text)), None)) is not None:
            res.reason = f"--skip {pattern!r}: run on its own"
        elif needs:
            res.reason = f"needs {needs[0]}, which the skipped or failed command of line {missing[needs[0]]} writes"
        elif not run:
            res.reason = "installs packages into this environment (--venv runs it in a fresh one)"
        elif fast and (why := _match(LONG, cmd.text)) is not None:
            res.reason = f"long: {why} (runs without --fast)"
        elif dry_run:
            res.status, res.reason = "would run", ""
        else:
            res.ran = " && ".join(run) if run != steps else ""
            res.status, res.returncode, res.output_tail, res.seconds = _run(" && ".join(run), workdir, env, timeout)
            if res.status == "timeout":
                res.reason = f"still running after {timeout:.0f} s: stopped"
        if res.status != "ok" and res.status != "would run":
            missing.update({p: cmd.line for p in _outputs(cmd.text)})
        results.append(res)
        _print(res)
    return results


def _print(r: Result) -> None:
    head = {"ok": "[ok]     ", "failed": "[FAILED] ", "timeout": "[TIMEOUT]", "skipped": "[skipped]",
            "would run": "[run]    "}[r.status]
    took = f" {r.seconds:6.1f} s" if r.status in ("ok", "failed", "timeout") else ""
    print(f"{head}{took} README.md:{r.line}  {r.command}", flush=True)
    if r.ran:
        print(f"           ran: {r.ran} (pip install steps left out: current environment)")
    if r.reason:
        print(f"           {r.reason}")
    if r.status in ("failed", "timeout"):
        print(f"           exit status {r.returncode}; last lines:")
        for line in r.output_tail:
            print(f"             | {line}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md",
                    help="the README to walk (default: the checkout's README.md)")
    ap.add_argument("--fast", action="store_true",
                    help="skip the commands of LONG (training, real-time sessions, the test suite)")
    ap.add_argument("--venv", action="store_true",
                    help="run in a fresh virtual environment, pip install steps included (default: the "
                         "current environment, pip install steps left out)")
    ap.add_argument("--timeout", type=float, default=3600.0,
                    help="seconds a command may run before it is stopped (default 3600)")
    ap.add_argument("--skip", action="append", default=[], metavar="REGEX",
                    help="skip the commands this regex finds (repeatable), e.g. one measured on its own")
    ap.add_argument("--list", action="store_true", help="list the commands and what would be skipped; run nothing")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results here (default: none)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (the copy, what the commands wrote; default: removed)")
    args = ap.parse_args(argv)

    shown = shown_commands(args.readme.read_text(encoding="utf-8"))
    if not shown:
        raise SystemExit(f"{args.readme}: no shell command in any code block")
    workdir = Path(tempfile.mkdtemp(prefix="bci-readme-"))
    try:
        venv_dir = None
        if not args.list:
            copy_checkout(workdir)
            if args.venv:
                venv_dir = workdir / ".venv"
                venv.create(venv_dir, with_pip=True)
        mode = f"fresh venv {venv_dir}" if venv_dir else f"current environment ({sys.executable})"
        where = "" if args.list else f"; in a copy of the checkout at {workdir}, {mode}"
        print(f"{args.readme}: {len(shown)} commands{where}", flush=True)
        results = walk(shown, workdir, fast=args.fast, venv_dir=venv_dir, timeout=args.timeout,
                       dry_run=args.list, skip=tuple(args.skip))
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "timeout", "skipped", "would run")}
    print(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"readme": str(args.readme), "fast": args.fast, "venv": args.venv,
                                         "skip": list(args.skip),
                                         "date": time.strftime("%Y-%m-%d %H:%M"),
                                         "results": [asdict(r) for r in results]}, indent=2) + "\n")
    return 1 if counts["failed"] or counts["timeout"] else 0


if __name__ == "__main__":
    sys.exit(main())
