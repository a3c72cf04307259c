"""The live pipeline: acquisition thread -> bounded queue -> inference thread -> report thread.

    EEG source + marker source --> Acquisition thread (epocher) --on_trial--> InferenceWorker
        --results (queue)--> report thread: the seen image looked up once, the listeners (the
        window's queue), then SessionReport (scoring, files)

The report thread keeps book-keeping (SSIM, the report's lines) off the inference thread, so
the next trial never waits for it. Changes while it runs, from any thread:
:meth:`Pipeline.set_recorder` (the old recorder is finalised on a thread of its own once
acquisition has stopped writing to it), :meth:`Pipeline.set_sampling` (steps, strength,
guidance, checked first) and :meth:`Pipeline.swap_reconstructor` (another bundle: checked
against the stream, the epocher rebuilt for its spec); the inference worker applies both
between two trials.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bci_app.config import InferenceConfig
from bci_app.session.inference import InferenceResult, InferenceWorker
from bci_app.session.realtime import realtime_settings
from bci_app.session.report import SessionReport
from bci_app.stimuli import MarkerMapper

log = logging.getLogger(__name__)

STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # a service manager, a closed terminal or ssh session


@contextlib.contextmanager
def stop_signals_as_interrupt():
    """SIGTERM and SIGHUP stop a session as Ctrl-C does (the SIGINT handler in force runs:
    ``KeyboardInterrupt``, or the window's clean quit), so every sample and marker is flushed,
    the recording finalized and the report written. Only the first such signal acts: a
    second one during the shutdown is logged, never an interrupt in the middle of a flush.
    Signal handlers belong to the main thread; elsewhere this does nothing."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = threading.Event()

    def handler(signum, frame) -> None:
        name = signal.Signals(signum).name
        if fired.is_set():
            log.warning("%s during the shutdown ignored; the session is being closed", name)
            return
        fired.set()
        log.warning("%s: stopping the session (as Ctrl-C)", name)
        on_int = signal.getsignal(signal.SIGINT)
        if callable(on_int):
            on_int(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt(name)

    old = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            old[sig] = signal.signal(sig, handler)
    try:
        yield fired
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


class _Tap:
    """Proxy of an EEG source that hands every chunk to listeners too."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.listeners: list[Callable[..., None]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self):
        data, ts = self._inner.read()
        if ts.size:
            for cb in self.listeners:
                cb(data, ts)
        return data, ts


class Pipeline:
    """Acquisition thread -> bounded queue -> inference thread, with a report.

    Parameters
    ----------
    source : EEG source (LSLSource, BrainFlowSource...)
    markers : marker source (LSLMarkerSource), the source itself (BrainFlow) or None
    reconstructor : Reconstructor
    mapper : MarkerMapper, optional
    inference : InferenceConfig, optional
    report : SessionReport, optional
    recorder : Recorder, optional
    buffer_seconds : float
        Epocher ring buffer length.
    max_batch : int
        Trials reconstructed together when several wait.
    photodiode : str, optional
        ``--photodiode CHANNEL``: the source's last channel is this light sensor (after the
        bundle's channels); each trial is re-timed to its light edge and ``report.json`` gets
        the marker-to-light delays (``"photodiode"``). The EEG listeners never see it.
    """

    def __init__(
        self,
        source: Any,
        markers: Any,
        reconstructor: Any,
        *,
        mapper: MarkerMapper | None = None,
        inference: InferenceConfig | None = None,
        report: SessionReport | None = None,
        recorder: Any = None,
        buffer_seconds: float = 10.0,
        max_batch: int = 1,
        photodiode: str | None = None,
    ) -> None:
        from bci_app.acquisition.acquisition import Acquisition
        from bci_app.acquisition.epocher import Epocher
        from bci_app.preprocessing.photodiode import DEFAULT_WINDOW

        cfg = inference or InferenceConfig()
        self.reconstructor = reconstructor
        self.raw_source = source
        self._cpu_threads = cfg.cpu_threads
        self._realtime: contextlib.ExitStack | None = None
        self.realtime: dict[str, object] = {}
        self.source = _Tap(source)
        self.markers = self.source if markers is source else markers
        self.mapper = mapper or MarkerMapper()
        self.buffer_seconds = float(buffer_seconds)
        self.photodiode = photodiode
        self._photodiode_window = DEFAULT_WINDOW if photodiode is not None else None
        self.epocher = Epocher(reconstructor.spec, self.mapper, buffer_seconds=buffer_seconds,
                               photodiode_window=self._photodiode_window)
        self.report = report or SessionReport()
        self.worker = InferenceWorker(
            reconstructor, queue_size=cfg.queue_size, policy=cfg.policy, warmup=cfg.warmup,
            max_batch=max_batch, on_result=self._on_result,
        )
        self.acquisition = Acquisition(self.source, self.markers, self.epocher,
                                       on_trial=self._on_trial, recorder=recorder)
        self.paused = False
        self._n_results = 0
        self._results_cond = threading.Condition()
        self._result_listeners: list[Callable[[InferenceResult], None]] = []
        self._results: queue.SimpleQueue[InferenceResult | None] = queue.SimpleQueue()
        self._report_thread: threading.Thread | None = None
        self._finalizers: list[threading.Thread] = []
        self.recorded: list[Any] = []  # session files written by recorders closed so far
        self.record_errors: list[str] = []
        self.started = False

    # ------------------------------------------------------------------ listeners
    def on_eeg(self, cb: Callable[[np.ndarray, np.ndarray], None]) -> None:
        if self.photodiode is not None:  # the EEG channels only: the sensor is the last row
            show = cb

            def cb(data: np.ndarray, ts: np.ndarray) -> None:
                show(data[:-1], ts)
        self.source.listeners.append(cb)

    def _eeg_names(self, src: Any) -> list[str]:
        """The source's channels that feed the model (all but a photodiode, its last)."""
        names = list(src.ch_names)
        return names[:-1] if self.photodiode is not None else names

    def on_markers(self, cb: Callable[[list[tuple[str, str | None, float]]], None]) -> None:
        """``cb([(marker, stimulus id or None, LSL time)])`` from the acquisition thread, each
        marker mapped once by the epocher."""
        self.acquisition.marker_listeners.append(cb)

    def on_result(self, cb: Callable[[InferenceResult], None]) -> None:
        """``cb(result)`` from the report thread for every trial, with ``result.seen`` looked
        up, before the report scores it."""
        self._result_listeners.append(cb)

    def on_error(self, cb: Callable[[BaseException, Any], None]) -> None:
        self.worker.add_error_callback(cb)

    # ------------------------------------------------------------------ flow
    def _on_trial(self, trial) -> None:  # acquisition thread: never blocks (default policy)
        if self.paused:
            return
        self.worker.submit(trial)

    def _on_result(self, result: InferenceResult) -> None:  # inference or acquisition thread
        self._results.put(result)

    def _report_loop(self) -> None:
        """The report thread: each result's seen image looked up once, the listeners (the
        window shows it), then the report's scoring and lines; None ends it."""
        while (result := self._results.get()) is not None:
            try:
                self.report.fetch_seen(result)
            except Exception:
                log.exception("looking up the seen image failed")
            for cb in list(self._result_listeners):
                try:
                    cb(result)
                except Exception:
                    log.exception("result listener failed")
            try:
                self.report.add(result)
            except Exception:
                log.exception("the report failed to add trial %d", result.trial.index)
            with self._results_cond:
                self._n_results += 1
                self._results_cond.notify_all()

    @property
    def n_results(self) -> int:
        return self._n_results

    def wait_results(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` trials have an outcome (reconstructed, dropped or rejected)."""
        deadline = time.monotonic() + timeout
        with self._results_cond:
            while self._n_results < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._results_cond.wait(min(left, 0.25))
        return True

    def start(self, check: bool = True, record: Any = None) -> Pipeline:
        """Warm the model up, connect the source (checking it against the bundle), start.

        ``record``: a recorder, or a callable ``record(source) -> recorder`` called once the
        source is connected (its channels known); it is in place before the first sample is
        read, so the recording holds every sample and marker the session sees."""
        on_cpu = getattr(getattr(self.reconstructor, "device", None), "type", "cpu") == "cpu"
        self._realtime = contextlib.ExitStack()
        self.realtime = self._realtime.enter_context(
            realtime_settings(cpu_threads=self._cpu_threads, torch_threads=on_cpu))
        self.worker.start(wait=True)
        src = self.raw_source
        mk = self.markers
        if mk is not None and mk is not self.source and getattr(mk, "state", "connected") == "disconnected":
            mk.connect()  # markers first: none sent while the EEG inlet opens is lost
        if getattr(src, "state", "disconnected") == "disconnected":
            src.connect()
        if check and hasattr(self.reconstructor, "check_compatible"):
            self.reconstructor.check_compatible(self._eeg_names(src), float(src.sfreq),
                                                self.reconstructor.spec.n_times)
        if record is not None:
            try:
                self.set_recorder(record if hasattr(record, "write") else record(src))
            except BaseException:  # e.g. --record DIR already holds a session: nothing runs
                self.worker.stop(timeout=5.0)
                self._realtime.close()
                self._realtime = None
                raise
        self.acquisition.start()
        self._report_thread = threading.Thread(target=self._report_loop, name="report", daemon=True)
        self._report_thread.start()
        self.started = True
        return self

    def stop(self) -> None:
        """Stop acquisition first (no new trials), then inference; every trial keeps an outcome."""
        if self.started:
            try:
                self.acquisition.stop()
            except Exception:
                log.exception("stopping acquisition failed")
        self.worker.stop(drain=True, timeout=10.0)
        if self._report_thread is not None and self._report_thread.is_alive():
            self._results.put(None)  # after every result: the report is complete when it ends
            self._report_thread.join()
        self.wait_recordings()
        self.report.samples_lost = self.epocher.stats.samples_lost
        self.report.photodiode = self.epocher.photodiode_summary()
        self.started = False
        if self._realtime is not None:  # restore the process settings start() changed
            self._realtime.close()
            self._realtime = None

    def set_recorder(self, recorder: Any, *, on_closed: Callable[[Any, str | None], None] | None = None) -> Any:
        """Record into ``recorder`` (None: stop recording); returns the previous recorder.

        The swap falls between two acquisition steps, so every chunk lands in exactly one
        recorder. The previous one is closed (``session_raw.fif`` written) on a thread of
        its own once acquisition has finished its last step with it; ``on_closed(path,
        error)`` is then called from that thread. :meth:`wait_recordings` waits for it.
        """
        old, seq = self.acquisition.replace_recorder(recorder)
        if old is None:
            return None

        def finalise() -> None:
            path, error = None, None
            try:
                self.acquisition.wait_step(seq)
                path = old.close()
                if path is not None:
                    self.recorded.append(path)
            except Exception as exc:  # reported, never raised into the GUI
                error = f"closing the recording in {getattr(old, 'dir', '?')} failed: {type(exc).__name__}: {exc}"
                self.record_errors.append(error)
                log.exception("finalising a recording failed")
            if on_closed is not None:
                on_closed(path, error)

        th = threading.Thread(target=finalise, name="recording-finalise", daemon=True)
        self._finalizers = [t for t in self._finalizers if t.is_alive()] + [th]
        th.start()
        return old

    def wait_recordings(self, timeout: float = 120.0) -> bool:
        """Wait until every replaced recorder is closed (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        for th in list(self._finalizers):
            th.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._finalizers)

    def sampling(self) -> tuple[int, float, float] | None:
        """The refiner's steps, strength and guidance in force (None: no refiner)."""
        return sampling_of(self.worker.reconstructor)

    def set_sampling(self, steps: int, strength: float, guidance: float) -> None:
        """Check refiner settings and have the inference worker sample with them from the next
        trial on (in force when this returns); a ``ValueError`` names what is wrong and nothing
        changes."""
        rec = self.worker.reconstructor
        if getattr(rec, "refiner", None) is not None:  # without one, nothing samples with them
            steps, strength, guidance = rec.refiner.validate_sampling(steps, strength, guidance)
        self.worker.set_sampling(int(steps), float(strength), guidance)

    def swap_reconstructor(self, new: Any) -> None:
        """Use another bundle's Reconstructor: ``ValueError`` with the reason when the stream
        cannot feed it (channels, rate); else the epocher is rebuilt for its spec (channels,
        window, filters, normalisation) and both are swapped between trials (the worker's
        from its next batch on)."""
        from bci_app.acquisition.epocher import Epocher

        src = self.raw_source
        if getattr(src, "ch_names", None):
            new.check_compatible(self._eeg_names(src), float(src.sfreq))
        epocher = Epocher(new.spec, self.mapper, buffer_seconds=max(
            self.buffer_seconds, 2.0 * (new.spec.tmax - min(new.spec.tmin, 0.0)) + 1.0),
            photodiode_window=self._photodiode_window)
        self.worker.use(new)
        self.reconstructor = new
        self.acquisition.swap_epocher(epocher)
        self.epocher = epocher

    def inference_busy(self, guard_s: float = 0.03) -> bool:
        """Whether inference runs now or a trial is due within ``guard_s`` (the window then
        skips redraws, so that drawing does not delay the trial)."""
        if self.worker.busy or self.worker.queue_depth:
            return True
        due = self.acquisition.seconds_to_next_window()
        return due is not None and due < guard_s

    def stats(self) -> dict[str, Any]:
        """The status line: the acquisition's counts (samples lost, trials, rejections by the
        epocher, unknown markers) and the worker's (queue, drops, reconstructions, errors)."""
        a = self.acquisition.stats
        w = self.worker.stats()
        return {
            "state": a["state"],
            "samples_lost": a["samples_lost"],
            "unknown_markers": a["unknown_markers"],
            "queue_depth": w["queue_depth"],
            "dropped": w["dropped"],
            "rejected": sum(a["rejected"].values()) + w["errors"],
            "reconstructed": w["reconstructed"],
            "trials": a["trials"],
            "device": str(getattr(self.reconstructor, "device", "?")),
            "recording": self.acquisition.recorder is not None,
            "last_error": w["last_error"],
            "recorder_error": self.acquisition.recorder_error,
        }


def sampling_of(rec: Any) -> tuple[int, float, float] | None:
    """``(steps, strength, guidance)`` a Reconstructor samples with: its overrides, else its
    refiner's own values (None when it has no refiner)."""
    ref = getattr(rec, "refiner", None)
    if ref is None:
        return None
    return ref.validate_sampling(rec.steps, rec.strength, rec.guidance)
