"""The session commands ``bci-app demo | live | replay``: lifecycle and shutdown.

:class:`~bci_app.session.pipeline.Pipeline` owns the acquisition thread, the inference
worker and the report; the ``run_*`` functions build sources for each command, add the window (or run
headless and write ``report.json``, ``trials.jsonl`` and ``grid.png``), and shut
everything down in ``finally`` (Ctrl-C, SIGTERM or SIGHUP, window closed, error).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bci_app.config import InferenceConfig
from bci_app.session.gui import run_gui
from bci_app.session.pipeline import Pipeline, stop_signals_as_interrupt
from bci_app.session.report import SessionReport
from bci_app.session.runs import run_folder
from bci_app.session.wiring import (
    inference_config,
    load_reconstructor,
    marker_mapper_for,
    model_channels,
    open_sources,
    source_options,
    stimuli_for,
)
from bci_app.stimuli import DemoStimulusSet

log = logging.getLogger(__name__)

DEFAULT_DEMO_RATE = 2.0
DEFAULT_HEADLESS_TRIALS = 60
DEMO_PRESENTER_HZ = 20.0


# ---------------------------------------------------------------------- helpers
def _report_for(stimuli: Any, reconstructor: Any) -> SessionReport:
    def seen(sid: str):
        return stimuli.image(sid) if stimuli is not None and sid in stimuli else None

    def label(sid: str):
        return stimuli.label(sid) if stimuli is not None and sid in stimuli else None

    n_classes = len(getattr(reconstructor, "classes", []) or []) or getattr(stimuli, "n_classes", None)
    return SessionReport(seen_image=seen, seen_label=label, n_classes=n_classes,
                         classify=getattr(reconstructor, "classify_images", None), reconstructor=reconstructor)


def _headless_requested(args: Any) -> bool:
    """``--headless``, or no display, or a Qt that cannot open a window here (said so)."""
    if getattr(args, "headless", False):
        return True
    from bci_app.ui.qt import has_display

    if not has_display():
        print("bci-app: no display found (no DISPLAY/WAYLAND_DISPLAY, or QT_QPA_PLATFORM=offscreen): "
              f"running headless; report files go to {_out_dir(args)}")
        return True
    from bci_app.ui.qt_check import check_qt_platform

    qt = check_qt_platform()  # in a subprocess: a missing plugin library aborts Qt itself
    if not qt.ok:
        print(f"bci-app: {qt.message()}; running headless; report files go to {_out_dir(args)}")
        return True
    return False


def _out_dir(args: Any) -> Path:
    """``--out``, or for a headless run a new ``runs/<command>-<date>-<time>``, chosen once
    (kept in ``args.out``) so that every message names the same folder; the window writes
    files only with --out."""
    if not getattr(args, "out", None):
        args.out = str(run_folder(getattr(args, "command", None) or "session"))
    return Path(args.out)


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    """The summary line, each figure with its reference (chance, shuffled pairs, bundle; the
    held-out classes' own top-1 when the bundle holds classes out)."""
    lat = summary["latency_ms"]["end_to_end"]
    q = summary["quality"]

    def f(x: Any, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)

    bundle = summary.get("bundle") or "?"
    n_ch, sfreq = summary.get("n_channels"), summary.get("sfreq")
    cap = f"{n_ch} ch" if n_ch else "? ch"
    if sfreq:
        cap += f" at {sfreq:g} Hz"
    h = q.get("held_out")
    held = "" if h is None else (
        f"held out ({', '.join(h['classes'])}): top-1 {f(h['top1'], '.2f')} ({h['ways']}-way among "
        f"them, chance {f(h['chance'], '.3g')}, n={h['n']})\n")
    print(
        f"trials {summary['trials']}: reconstructed {summary['reconstructed']}, dropped "
        f"{summary['dropped']}, rejected {sum(summary['rejected'].values())}; end-to-end p50 "
        f"{lat['p50']} ms p95 {lat['p95']} ms\n"
        f"top-1 {f(q['top1'], '.2f')} ({q['ways']}-way, chance {f(q.get('chance'), '.3g')}, n={q['n']}) | "
        f"SSIM {f(q['ssim'], '.3f')} (shuffled pairs {f(q.get('ssim_shuffled'), '.3f')}) | "
        f"bundle {bundle}, {cap}\n{held}wrote {out / 'report.json'}, {out / 'trials.jsonl'}, {out / 'grid.png'}"
    )


def run_headless(pipeline: Pipeline, n_trials: int | None, out: str | Path, *,
                 timeout: float | None = None, done: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run until ``n_trials`` trials have an outcome (or ``done()``), then write the files.

    Ctrl-C stops early; the files are written either way."""
    out = Path(out)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            if n_trials is not None and pipeline.n_results >= n_trials:
                break
            if done is not None and done():
                # the source has finished: give the last windows time to complete
                pipeline.wait_results(n_trials or 0, 2.0)
                break
            if deadline is not None and time.monotonic() > deadline:
                log.warning("stopping: %s of %s trials after %.0f s", pipeline.n_results, n_trials, timeout)
                break
            pipeline.wait_results(n_trials if n_trials is not None else 1 << 60, 0.2)
    except KeyboardInterrupt:
        print("bci-app: interrupted; writing the report of the trials so far")
    finally:
        pipeline.stop()
    summary = pipeline.report.write(out)
    _print_summary(summary, out)
    return summary


def _window_rc(win: Any, n_trials: int | None) -> int:
    """Exit status of a windowed session: as headless when it ran to ``--trials``, else 0."""
    summary = win.session.summary
    if summary is not None:
        _print_summary(summary, win.session.out)
        if n_trials is not None and win.session.finished.is_set():
            total = summary["reconstructed"] + summary["dropped"] + sum(summary["rejected"].values())
            return 0 if total == summary["trials"] >= n_trials else 1
    return 0


def _stoppable(fn: Callable[[Any], int]) -> Callable[[Any], int]:
    """SIGTERM/SIGHUP end the command as Ctrl-C does: files written, recording finalized."""

    @functools.wraps(fn)
    def run(args: Any) -> int:
        with stop_signals_as_interrupt():
            return fn(args)
    return run


def _recorder_factory(args: Any) -> Callable[[Any], Any] | None:
    """``--record DIR``: the recorder of the connected source (its channel types and units
    from the stream's metadata; a ``--photodiode`` sensor, the source's last channel, as
    ``misc`` and named in session.json, as ``record`` keeps it), made before the first sample
    is read; None without it."""
    if not getattr(args, "record", None):
        return None

    def make(source: Any) -> Any:
        from bci_app.acquisition.recorder import Recorder

        return Recorder.for_source(args.record, source, photodiode=getattr(args, "photodiode", None))
    return make


# ---------------------------------------------------------------------- commands
def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def build_demo(args: Any, *, headless: bool, n_trials: int | None):
    """Virtual subject + marker schedule + pipeline for ``bci-app demo`` (not started)."""
    from bci_app.acquisition.markers import LSLMarkerSource
    from bci_app.acquisition.sources import LSLSource
    from bci_app.acquisition.virtual_subject import VirtualSubject
    from bci_app.simulation.montage import montage_for_channels
    from bci_app.ui.presenter import make_marker_outlet, schedule_for

    rate = float(args.rate if getattr(args, "rate", None) is not None else DEFAULT_DEMO_RATE)
    if rate <= 0:
        raise ValueError(f"--rate must be > 0 stimuli per second, got {rate}")
    cfg = inference_config(args)
    rec = load_reconstructor(args.bundle, cfg)
    stimuli = DemoStimulusSet()
    eeg_name, mk_name = _unique("bci-app-demo-eeg"), _unique("bci-app-demo-markers")
    outlet = make_marker_outlet(mk_name, mk_name)
    snr = args.snr if getattr(args, "snr", None) is not None else 1.0
    # the virtual subject wears the bundle's cap at the bundle's rate, unless told otherwise
    montage = getattr(args, "montage", None) or montage_for_channels(list(rec.spec.ch_names))
    sfreq = float(getattr(args, "sfreq", None) or rec.spec.sfreq)
    subject = VirtualSubject(stimuli, snr=snr, seed=args.seed, name=eeg_name, source_id=eeg_name,
                             markers_name=mk_name, montage=montage, sfreq=sfreq)
    n_sched = n_trials if n_trials is not None else 100_000
    schedule = schedule_for(stimuli, n_sched, on=1.0 / rate, off=0.0, order="random",
                            seed=args.seed, start=1.0)
    source = LSLSource(name=eeg_name, source_id=eeg_name, ch_names=list(rec.spec.ch_names),
                       sfreq=rec.spec.sfreq)
    markers = LSLMarkerSource(name=mk_name)
    report = _report_for(stimuli, rec)
    pipeline = Pipeline(source, markers, rec, mapper=marker_mapper_for(args, stimuli),
                        inference=cfg, report=report)
    return pipeline, subject, schedule, outlet, stimuli, cfg


@_stoppable
def run_demo(args: Any) -> int:
    """``bci-app demo``: virtual subject + marker schedule + live pipeline (+ window)."""
    if getattr(args, "rate", None) is not None and args.rate <= 0:
        raise ValueError(f"--rate must be > 0 stimuli per second, got {args.rate}")
    if getattr(args, "trigger_channel", None):
        raise ValueError(
            f"--trigger-channel {args.trigger_channel!r}: the virtual subject's stream has no "
            "trigger channel (its markers come on a marker stream); drop the flag"
        )
    if getattr(args, "photodiode", None):
        raise ValueError(
            f"--photodiode {args.photodiode!r}: the virtual subject's stream has no light-sensor "
            "channel (its markers are its onsets); drop the flag"
        )
    headless = _headless_requested(args)
    n_trials = args.trials
    if headless and n_trials is None:
        n_trials = DEFAULT_HEADLESS_TRIALS
        print(f"bci-app demo: --trials not given; running {n_trials} trials")
    pipeline, subject, schedule, outlet, stimuli, cfg = build_demo(args, headless=headless, n_trials=n_trials)
    publisher = None
    presenter = None
    try:
        subject.start()
        pipeline.start(record=_recorder_factory(args))
        if headless:
            from bci_app.ui.presenter import MarkerSchedulePublisher

            publisher = MarkerSchedulePublisher(schedule, outlet=outlet, wait_for_consumers=5.0).start()
            timeout = float(schedule.onsets[-1]) + 30.0
            summary = run_headless(pipeline, n_trials, _out_dir(args), timeout=timeout)
            total = summary["reconstructed"] + summary["dropped"] + sum(summary["rejected"].values())
            return 0 if total == summary["trials"] == n_trials else 1
        from bci_app.ui.presenter_window import PresenterWindow
        from bci_app.ui.qt import ensure_app

        app = ensure_app()
        # The virtual subject has no eyes: a raster presenter flipping at DEMO_PRESENTER_HZ
        # (onsets on a 50 ms grid) instead of every screen refresh, which on 2 cores took
        # the CPU from inference. A real session presents with `bci-app present`.
        presenter = PresenterWindow(stimuli, schedule, outlet=outlet, use_opengl=False,
                                    refresh_hz=DEMO_PRESENTER_HZ)
        presenter.setWindowTitle("bci-app demo: presenter")
        presenter.resize(400, 400)
        presenter.show()
        presenter.start()
        win = run_gui(pipeline, stimuli=stimuli, bundle=args.bundle, cfg=cfg, record_dir=args.record,
                      presenter=presenter, app=app, out=args.out, n_trials=n_trials,
                      close_when_done=getattr(args, "close_when_done", False))
        return _window_rc(win, n_trials)
    finally:
        if publisher is not None:
            publisher.stop()
        if presenter is not None:
            presenter.stop()
            presenter.close()
        if pipeline.started:
            pipeline.stop()
        subject.stop()


def _run_pipeline(args: Any, source: Any, markers: Any, rec: Any, cfg: InferenceConfig,
                  stimuli: Any, done: Callable[[], bool] | None = None) -> int:
    report = _report_for(stimuli, rec)
    pipeline = Pipeline(source, markers, rec, mapper=marker_mapper_for(args, stimuli),
                        inference=cfg, report=report, photodiode=getattr(args, "photodiode", None))
    headless = _headless_requested(args)
    try:
        pipeline.start(record=_recorder_factory(args))
        if headless:
            run_headless(pipeline, args.trials, _out_dir(args), done=done)
            return 0
        win = run_gui(pipeline, stimuli=stimuli, bundle=args.bundle, cfg=cfg, record_dir=args.record,
                      out=args.out, n_trials=args.trials,
                      close_when_done=getattr(args, "close_when_done", False))
        return _window_rc(win, args.trials)
    finally:
        if pipeline.started:
            pipeline.stop()


@_stoppable
def run_live(args: Any) -> int:
    """``bci-app live --source lsl[:NAME] | brainflow:BOARD``."""
    cfg = inference_config(args)
    rec = load_reconstructor(args.bundle, cfg)
    source, markers = open_sources(args.source, args.markers, **source_options(args, rec.spec))
    return _run_pipeline(args, source, markers, rec, cfg, stimuli_for(args))


def _replay_raw(session: str, trigger_channel: str | None = None) -> Any:
    """What ``replay`` streams: a session directory or .fif as it is (an unfinished session
    rebuilt from its chunks), anything else - XDF (``FILE.xdf,eeg=..,markers=..``), a raw file
    MNE reads (.vhdr, .bdf, .edf, .set, .cnt, .mff) - read into a raw whose annotations are
    the markers (a trigger channel's codes included)."""
    text = str(session)
    path = text.removeprefix("session:").split(",")[0]
    plain = "," not in text and trigger_channel is None and (
        Path(path).is_dir() and not path.lower().endswith(".mff")
        or path.lower().endswith((".fif", ".fif.gz")))
    if plain:
        return text.removeprefix("session:")
    from bci_app.datasets import read_recording_spec

    return read_recording_spec(text + (f",trigger={trigger_channel}" if trigger_channel else ""))


@_stoppable
def run_replay(args: Any) -> int:
    """``bci-app replay SESSION``: stream a recorded session over LSL and run the pipeline on it."""
    from bci_app.acquisition.markers import LSLMarkerSource
    from bci_app.acquisition.player import SessionPlayer
    from bci_app.acquisition.sources import LSLSource

    cfg = inference_config(args)
    rec = load_reconstructor(args.bundle, cfg)
    name = _unique("bci-app-replay")
    session = _replay_raw(args.session, getattr(args, "trigger_channel", None))
    player = SessionPlayer(session, speed=args.speed, name=name, source_id=name)
    # a recording with other channels too (EOG, a trigger channel, the photodiode...) is
    # picked by name
    photodiode = getattr(args, "photodiode", None)
    same = photodiode is None and len(player.ch_names) == len(rec.spec.ch_names)
    source = LSLSource(name=name, source_id=name, sfreq=rec.spec.sfreq,
                       dejitter=not getattr(args, "no_dejitter", False),
                       **({"n_channels": len(rec.spec.ch_names)} if same
                          else {"ch_names": model_channels(rec.spec, photodiode)}))
    markers = LSLMarkerSource(name=f"{name}-markers")
    if args.trials is None:
        args.trials = len(player.marker_strings)
    player_started = threading.Event()
    duration = player.n_times / player.sfreq
    print(f"replaying {args.session}: {duration:.0f} s of EEG, {len(player.marker_strings)} markers, "
          f"at {args.speed:g}x (about {duration / args.speed:.0f} s); progress every 10 %", flush=True)

    def start_player() -> None:
        # the pipeline warms its model up before it subscribes: a large bundle on a busy CPU
        # takes well over 10 s, and markers sent before then would be lost
        player.start(wait_for_consumers=60.0)
        player_started.set()
        _print_replay_progress(player)
    threading.Thread(target=start_player, name="replay-start", daemon=True).start()
    try:
        return _run_pipeline(args, source, markers, rec, cfg, stimuli_for(args),
                             done=lambda: player.done.is_set())
    finally:
        player.stop()


def _print_replay_progress(player: Any, poll_s: float = 0.5) -> None:
    """One line per 10 % of the session streamed, until the player is done or stopped."""
    last = 0
    while not player.done.wait(poll_s):
        tenth = int(10 * player.n_pushed / max(1, player.n_times))
        if tenth > last:
            last = tenth
            print(f"replay: {10 * tenth} % ({player.n_pushed / player.sfreq:.0f} s of "
                  f"{player.n_times / player.sfreq:.0f} s, {player.n_markers_pushed} of "
                  f"{len(player.marker_strings)} markers)", flush=True)
