"""``bci-app record``: a calibration session, EEG + markers to FIF, no bundle and no models.

    bci-app record --source lsl[:NAME] | brainflow:BOARD | virtual[:MONTAGE]
                   --out DIR [--markers NAME] [--seconds S] [--trials N]
                   [--present [--images DIR] [--photodiode-patch]] [--marker-pattern REGEX]
                   [--photodiode CHANNEL]

Whatever the source's montage and rate, every channel is recorded as it streams (in
volts: units from the stream's metadata or ``--units``) to the crash-safe session format
of :class:`~bci_app.acquisition.recorder.Recorder` (``DIR/session_raw.fif`` once closed,
chunks of at most a second before). Recording stops after ``--seconds``, after
``--trials`` stimulus markers (plus ``--tail`` seconds, so the last window is complete),
when the presentation ends, or on Ctrl-C; each way the session is closed and kept.

- ``--present`` shows the stimuli (the demo set, or ``--images DIR``) in the presenter
  window and sends the markers itself, on an LSL stream that the recorder reads;
- ``--source virtual[:MONTAGE]`` records the virtual subject (``--montage``, ``--sfreq``,
  streaming microvolts like an amplifier) watching the demo set: shown with
  ``--present``, else scheduled headless. This is the "your own cap" rehearsal without
  hardware, e.g. ``bci-app record --source virtual --montage biosemi64 --sfreq 512
  --trials 600 --out calib``.

Markers count as trials when they match ``--marker-pattern`` (without one: every marker).

``--photodiode CHANNEL`` names the light sensor over the presenter's patch
(``--photodiode-patch``): it is recorded as a ``misc`` channel (never EEG), named in
``session.json`` (``"photodiode"``), and the marker-to-light delays of the trials are printed
at the end; ``train``/``evaluate``/``replay --photodiode CHANNEL`` re-time the trials to it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bci_app.acquisition.recorder import SESSION_FIF, Recorder

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 1.0  # on a terminal: one line, rewritten in place
LOG_INTERVAL_S = 60.0  # not a terminal (a log file) without a goal: a line a minute


class RecordingLoop:
    """Poll an EEG source and a marker source into a :class:`Recorder` until done.

    Parameters
    ----------
    source, markers
        An EEG source (``connect``/``read``/``ch_names``/``sfreq``) and a
        marker source (``pull() -> [(marker, LSL time)]``; may be the source itself).
    out : path
        Session directory (must not hold a session yet).
    seconds, trials : optional
        Stop after this many seconds of recording / this many trials (+ ``tail``).
    tail : float
        Seconds recorded after the last counted trial (the window after the marker).
    is_trial : callable, optional
        ``is_trial(marker) -> bool``; default: every marker is a trial.
    trigger_channel, photodiode : str, optional
        A channel of the stream recorded as a stim channel / as the light sensor (``misc``,
        named in ``session.json``).
    """

    def __init__(
        self,
        source: Any,
        markers: Any,
        out: str | Path,
        *,
        seconds: float | None = None,
        trials: int | None = None,
        tail: float = 1.0,
        is_trial: Callable[[str], bool] | None = None,
        trigger_channel: str | None = None,
        photodiode: str | None = None,
    ) -> None:
        if seconds is not None and seconds <= 0:
            raise ValueError(f"--seconds must be > 0, got {seconds}")
        if trials is not None and trials < 1:
            raise ValueError(f"--trials must be >= 1, got {trials}")
        if tail < 0:
            raise ValueError(f"tail must be >= 0 s, got {tail}")
        out = Path(out)
        if (out / "session.json").exists() or (out / SESSION_FIF).exists():
            raise ValueError(
                f"--out {str(out)!r} already holds a recorded session; expected a new or empty "
                "directory (nothing there was touched)"
            )
        self.source, self.markers, self.out = source, markers, out
        self.seconds, self.trials, self.tail = seconds, trials, float(tail)
        self.is_trial = is_trial or (lambda _marker: True)
        self.trigger_channel = trigger_channel
        self.photodiode = photodiode
        self.recorder: Recorder | None = None
        self.n_trials = 0
        self.n_markers = 0
        self.t_start: float | None = None
        self._last_trial_t: float | None = None
        self._last_ts: float | None = None
        self._end_after: float | None = None  # LSL time after which the loop is done
        self._last_status = 0.0
        self._last_step = 0  # tenths of the goal printed (log output)

    def start(self) -> RecordingLoop:
        """Connect both sources and open the recorder on the source's channels and rate."""
        if getattr(self.source, "state", "disconnected") == "disconnected":
            self.source.connect()
        if self.markers is not self.source and getattr(self.markers, "state", "disconnected") == "disconnected":
            self.markers.connect()
        # the channel types and units of the stream's metadata (EOG stays EOG in the FIF)
        from bci_app.acquisition.recorder import channel_metadata

        names = list(self.source.ch_names)
        types, units = channel_metadata(self.source)
        low = [n.lower() for n in names]
        notes = {}
        # a trigger channel is recorded as a stim channel, a light sensor as misc: never EEG
        for flag, channel, kind in (("--trigger-channel", self.trigger_channel, "stim"),
                                    ("--photodiode", self.photodiode, "misc")):
            if channel is None:
                continue
            if channel.lower() not in low:
                raise ValueError(
                    f"{flag} {channel!r} is not in the stream; its channels are: {', '.join(names)}"
                )
            types = list(types or ["eeg"] * len(names))
            types[low.index(channel.lower())] = kind
            if kind == "misc":
                notes["photodiode"] = names[low.index(channel.lower())]
        self.recorder = Recorder(self.out, names, float(self.source.sfreq), ch_types=types,
                                 units=units, notes=notes)
        self.t_start = time.monotonic()
        return self

    def finish_after(self, lsl_time: float) -> None:
        """End once the EEG reaches ``lsl_time + tail`` (e.g. the last presented stimulus)."""
        t = float(lsl_time) + self.tail
        self._end_after = t if self._end_after is None else min(self._end_after, t)

    @property
    def end_time(self) -> float | None:
        """LSL time the EEG must reach for the recording to be complete (None: not set)."""
        return self._end_after

    @property
    def elapsed(self) -> float:
        return 0.0 if self.t_start is None else time.monotonic() - self.t_start

    def step(self) -> bool:
        """One poll; returns False when the recording is complete."""
        if self.recorder is None:
            raise RuntimeError("RecordingLoop.step() before start(); call start() first")
        marks = self.markers.pull()
        data, ts = self.source.read()
        if ts.size:
            self.recorder.write(data, ts)
            self._last_ts = float(ts[-1])
        if marks:
            self.recorder.add_markers(marks)
            self.n_markers += len(marks)
            for marker, t in marks:
                if self.is_trial(marker):
                    self.n_trials += 1
                    self._last_trial_t = float(t)
                    if self.trials is not None and self.n_trials == self.trials:
                        self.finish_after(t)
        return not self.done

    @property
    def done(self) -> bool:
        if self.seconds is not None and self.elapsed >= self.seconds:
            return True
        return (self._end_after is not None and self._last_ts is not None
                and self._last_ts >= self._end_after)

    def status_line(self) -> str:
        n = self.recorder.n_samples if self.recorder is not None else 0
        lost = self.recorder.samples_lost if self.recorder is not None else 0
        goal = f"/{self.trials}" if self.trials else ""
        return (f"recording {self.elapsed:6.1f} s | {n} samples ({len(self.source.ch_names)} ch @ "
                f"{float(self.source.sfreq):g} Hz) | {self.n_markers} markers, "
                f"{self.n_trials}{goal} trials | {lost} lost")

    def progress(self) -> float | None:
        """Fraction of the goal done (``trials`` or ``seconds``, whichever is further), or None."""
        done = [self.n_trials / self.trials] if self.trials else []
        if self.seconds:
            done.append(self.elapsed / self.seconds)
        return min(1.0, max(done)) if done else None

    def print_status(self, force: bool = False, tty: bool | None = None) -> None:
        """The status line: rewritten in place on a terminal; in a log (stdout not a terminal)
        only a few lines: one per 10 % of the goal, or one a minute without a goal."""
        tty = sys.stdout.isatty() if tty is None else tty
        now = time.monotonic()
        if tty or force:
            due = force or now - self._last_status >= STATUS_INTERVAL_S
        else:
            frac = self.progress()
            if frac is None:
                due = now - self._last_status >= LOG_INTERVAL_S
            else:
                step = int(frac * 10)
                due = step > self._last_step
                if due:
                    self._last_step = step
        if due:
            self._last_status = now
            end = "\r" if tty and not force else "\n"
            print(self.status_line(), end=end, flush=True)

    def close(self) -> Path | None:
        """Close the recorder (``session_raw.fif``) and disconnect the sources."""
        path = self.recorder.close() if self.recorder is not None else None
        for s in {id(self.source): self.source, id(self.markers): self.markers}.values():
            with contextlib.suppress(Exception):
                s.disconnect()
        return path


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _marker_counter(pattern: str | None, event_map: str | None = None) -> Callable[[str], bool]:
    """Which markers count as trials: those of ``--event-map`` (then ``--marker-pattern``),
    or of ``--marker-pattern``, or (neither) every marker."""
    from bci_app.stimuli import EventMap, MarkerMapper

    if event_map is not None:
        emap = EventMap.load(event_map).with_fallback(MarkerMapper(pattern) if pattern else None)
        return lambda marker: emap(marker) is not None
    if pattern is None:
        return lambda _marker: True
    mapper = MarkerMapper(pattern)
    return lambda marker: mapper(marker) is not None


def _stimuli(args: Any):
    from bci_app.ui.presenter import load_stimuli

    return load_stimuli(args)


def _schedule(args: Any, stimuli: Any, n: int):
    from bci_app.ui.presenter import schedule_for

    return schedule_for(stimuli, n, on=args.on, off=args.off, order=args.order, seed=args.seed,
                        start=1.0)


def _virtual_subject(args: Any, markers_name: str):
    from bci_app.acquisition.virtual_subject import VirtualSubject

    _, _, montage = str(args.source).partition(":")
    if montage and getattr(args, "montage", None):
        raise ValueError(
            f"--source {args.source!r} and --montage {args.montage!r} both name a montage; "
            "give it once"
        )
    if getattr(args, "images", None):
        raise ValueError(
            "--source virtual sees only the procedural demo set; drop --images (or record a "
            "person with --source lsl/brainflow)"
        )
    name = _unique("bci-app-virtual-eeg")
    return VirtualSubject(snr=args.snr, seed=args.seed, name=name, source_id=name,
                          markers_name=markers_name, montage=montage or args.montage,
                          sfreq=args.sfreq or 1000.0, units="uV")


def run_record(args: Any) -> int:
    """Entry point of ``bci-app record`` (argparse namespace from :mod:`bci_app.cli`)."""
    from bci_app.session.pipeline import stop_signals_as_interrupt
    from bci_app.session.realtime import realtime_settings
    from bci_app.session.wiring import open_sources, source_options

    virtual = str(args.source).split(":")[0] == "virtual"
    if not virtual and (args.montage or args.sfreq):
        raise ValueError(
            f"--montage/--sfreq describe the virtual subject; --source {args.source!r} streams "
            "its own channels and rate (they are recorded as they are)"
        )
    if args.present:
        from bci_app.ui.presenter import display_options
        from bci_app.ui.qt import has_display

        display_options(args)  # bad sizes fail here, before anything is opened

        if not has_display():
            raise RuntimeError(
                "bci-app record --present needs a display (QT_QPA_PLATFORM is offscreen or no "
                "DISPLAY); record without --present and run `bci-app present` on the "
                "presentation machine"
            )
        if args.markers:
            raise ValueError(
                f"--markers {args.markers!r} with --present: the presenter sends the markers on "
                "its own stream and records those; drop --markers (or --present)"
            )
    elif args.images:
        raise ValueError("--images is for --present (the images shown); add --present")
    elif args.photodiode_patch:
        raise ValueError("--photodiode-patch is drawn by the presenter window; add --present")
    if virtual and not args.present and args.trials is None and args.seconds is None:
        raise ValueError(
            "--source virtual without --present needs --trials N or --seconds S (the headless "
            "schedule's length)"
        )

    publisher = outlet = stimuli = schedule = None
    markers_name = args.markers
    subject = None
    if args.present or virtual:
        from bci_app.ui.presenter import make_marker_outlet

        stimuli = _stimuli(args)
        n = args.trials or (len(stimuli) if args.present else
                            int(args.seconds / (args.on + args.off)) + 1)
        schedule = _schedule(args, stimuli, n)
        markers_name = _unique("bci-app-record-markers")
        outlet = make_marker_outlet(markers_name, markers_name)
    if virtual:
        subject = _virtual_subject(args, markers_name)
        source, markers = open_sources(f"lsl:{subject.name}", markers_name,
                                       dejitter=not getattr(args, "no_dejitter", False))
    else:
        source, markers = open_sources(args.source, markers_name, **source_options(args))
    loop = RecordingLoop(source, markers, args.out, seconds=args.seconds, trials=args.trials,
                         tail=args.tail, is_trial=_marker_counter(args.marker_pattern,
                                                  getattr(args, "event_map", None)),
                         trigger_channel=getattr(args, "trigger_channel", None),
                         photodiode=args.photodiode)
    interrupted = False
    # Ctrl-C sets a flag that the loop reads between steps: a KeyboardInterrupt raised in the
    # middle of a recorder write or a thread join could lose data or hang the shutdown
    stop_requested = threading.Event()
    with realtime_settings(torch_threads=False), contextlib.ExitStack() as stack:
        if not args.present and threading.current_thread() is threading.main_thread():
            old_handler = signal.signal(signal.SIGINT, lambda *_: stop_requested.set())
            stack.callback(signal.signal, signal.SIGINT, old_handler)
        # SIGTERM/SIGHUP run the SIGINT handler in force: the recording is closed the same way
        stack.enter_context(stop_signals_as_interrupt())
        if subject is not None:
            subject.start()
            stack.callback(subject.stop)
        try:
            loop.start()
            if subject is not None:
                subject.wait_for_markers(timeout=15.0)
            print(f"recording {len(source.ch_names)} channels at {float(source.sfreq):g} Hz "
                  f"from {args.source} into {args.out} (Ctrl-C to stop)", flush=True)
            if args.present:
                interrupted = _present_and_record(loop, stimuli, schedule, outlet, args)
            else:
                if schedule is not None:
                    from bci_app.ui.presenter import MarkerSchedulePublisher

                    publisher = MarkerSchedulePublisher(schedule, outlet=outlet, name=markers_name)
                    publisher.start()
                    stack.callback(publisher.stop)
                interrupted = _record_headless(loop, publisher, stop_requested)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if subject is not None:
                subject.check()
            path = loop.close()
    loop.print_status(force=True)
    if path is None:
        raise RuntimeError(
            f"no EEG sample arrived from {args.source}; nothing was recorded in {args.out}"
        )
    print(f"{'interrupted: ' if interrupted else ''}wrote {path}: {loop.recorder.n_samples} "
          f"samples, {loop.n_markers} markers ({loop.n_trials} trials), "
          f"{loop.recorder.samples_lost} samples lost")
    if args.photodiode:
        print(photodiode_line(path, args.photodiode, loop.is_trial))
    print(next_step_hint(args.out, loop.n_markers, loop.n_trials, args.photodiode))
    return 0


def photodiode_line(path: str | Path, channel: str, is_trial: Callable[[str], bool]) -> str:
    """The marker-to-light delays of the trials of the recording ``path`` (``record
    --photodiode``), found as ``train``/``evaluate --photodiode`` find them; or why not."""
    from bci_app.acquisition.recorder import read_session
    from bci_app.preprocessing.epochs import (
        _annotation_times,
        is_marker,
        photodiode_channel,
        time_to_sample,
    )
    from bci_app.preprocessing.photodiode import edge_delays_ms, find_edges, photodiode_summary

    raw = read_session(path)
    sfreq = float(raw.info["sfreq"])
    keep = [i for i, d in enumerate(raw.annotations.description) if is_marker(d) and is_trial(d)]
    marks = time_to_sample(_annotation_times(raw)[keep], sfreq)
    try:
        ipd = photodiode_channel(raw, channel)
        edges = find_edges(raw.get_data(picks=[ipd])[0], sfreq, marks, name=raw.ch_names[ipd])
    except ValueError as err:
        return f"photodiode {channel}: no marker-to-light delay measured: {err}"
    s = photodiode_summary(edge_delays_ms(edges, marks, sfreq))
    return (f"photodiode {channel}: marker-to-light delay {s['mean_ms']} ms (SD {s['sd_ms']}, "
            f"{s['min_ms']}..{s['max_ms']}) over {s['n'] - s['missing']} of {s['n']} trials; "
            f"{s['missing']} without a light edge")


def next_step_hint(out: str | Path, n_markers: int, n_trials: int,
                   photodiode: str | None = None) -> str:
    """What to run on the session just recorded: train on it, or evaluate a bundle trained
    on another session on it (re-timed to ``photodiode``, when recorded with one); or, with
    no trials, why neither can run."""
    if n_markers == 0:
        return (f"no markers were recorded: {out} holds EEG without any stimulus marker, so it "
                "can neither train nor evaluate a bundle; check that the presenter's marker stream "
                "is running (--markers NAME, or --present) and record again")
    if n_trials == 0:
        return (f"none of the {n_markers} markers matched --marker-pattern, so {out} has no trials; "
                "record again with a pattern that matches the presenter's markers")
    pd = f" --photodiode {photodiode}" if photodiode else ""
    return (f"next: to train a bundle on this session:\n"
            f"  bci-app train --data session:{out} --config configs/calibration.toml --out runs/mybundle{pd}\n"
            f"or, if it is a held-out session for a bundle trained on another one:\n"
            f"  bci-app evaluate --bundle runs/mybundle --data session:{out} --out runs/eval{pd}")


def _record_headless(loop: RecordingLoop, publisher: Any,
                     stop_requested: threading.Event | None = None) -> bool:
    """Poll until done (or Ctrl-C); returns True when interrupted."""
    try:
        while True:
            if stop_requested is not None and stop_requested.is_set():
                return True
            more = loop.step()
            loop.print_status()
            if publisher is not None:
                if publisher.error is not None:
                    raise RuntimeError(f"the marker schedule failed: {publisher.error}")
                if publisher.done and publisher.t0 is not None and loop.end_time is None:
                    last = publisher.t0 + float(publisher.schedule.onsets[-1])
                    loop.finish_after(last)
            if not more:
                return False
            time.sleep(0.01)
    except KeyboardInterrupt:
        return True


def _present_and_record(loop: RecordingLoop, stimuli: Any, schedule: Any, outlet: Any,
                        args: Any) -> bool:
    """Show the schedule in the presenter window while a 10 ms timer records; True on Ctrl-C
    or Esc."""
    import signal

    from PySide6.QtCore import QEventLoop, QTimer

    from bci_app.ui.presenter_window import PresenterWindow
    from bci_app.ui.qt import ensure_app

    ensure_app()
    from bci_app.ui.presenter import display_options

    # a local event loop: qloop.quit() would leave Qt's "quit now" flag set for the process
    qloop = QEventLoop()

    win = PresenterWindow(stimuli, schedule, outlet=outlet, photodiode=args.photodiode_patch,
                          **display_options(args))
    state = {"interrupted": False, "error": None}

    def finished() -> None:
        if win.timestamps and len(win.timestamps) == len(schedule):
            loop.finish_after(win.timestamps[-1])
        else:  # Esc: stop now
            state["interrupted"] = True
            qloop.quit()

    def poll() -> None:
        try:
            more = loop.step()
            loop.print_status()
        except Exception as err:  # noqa: BLE001 - ends the run, re-raised below
            state["error"] = err
            more = False
        if not more or state["interrupted"]:
            qloop.quit()

    def on_sigint(*_: Any) -> None:
        state["interrupted"] = True

    win.finished.connect(finished)
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(poll)
    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        win.show_on_screen(args.screen, fullscreen=not args.windowed)
        timer.start()
        win.start()
        qloop.exec()
    finally:
        timer.stop()
        signal.signal(signal.SIGINT, old)
        win.stop()
        win.close()
    print(f"presentation: {win.pushed} markers; frames: {win.frame_report()}")
    if state["error"] is not None:
        raise state["error"]
    return bool(state["interrupted"])
