"""Outputs without ``--out`` go to a new ``runs/<command>-<date>-<time>`` folder."""

from __future__ import annotations

import time

import mne

from bci_app.cli import main
from bci_app.session.runs import run_folder


def test_run_folder_is_named_for_the_command_and_never_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = time.time()
    first = run_folder("demo", now)
    assert first.parent.name == "runs" and first.name == f"demo-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    first.mkdir(parents=True)
    second = run_folder("demo", now)
    assert second.name == f"{first.name}-2" and not second.exists()


def test_headless_demo_writes_under_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--headless", "--trials", "3", "--rate", "4"]) == 0
    demo = list((tmp_path / "runs").glob("demo-*"))
    assert len(demo) == 1 and (demo[0] / "report.json").is_file() and (demo[0] / "grid.png").is_file()
    assert f"runs/{demo[0].name}/report.json" in capsys.readouterr().out


def test_record_writes_under_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["record", "--source", "virtual", "--trials", "3"]) == 0
    rec = list((tmp_path / "runs").glob("record-*"))
    assert len(rec) == 1
    raw = mne.io.read_raw_fif(next(rec[0].glob("*.fif")), verbose="error")
    assert sum(d.startswith("stim/") for d in raw.annotations.description) >= 3
    assert f"runs/{rec[0].name}" in capsys.readouterr().out
