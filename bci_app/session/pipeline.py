"""The live pipeline: acquisition thread -> bounded queue -> inference thread -> report.

    EEG source + marker source --> Acquisition thread (epocher) --on_trial--> InferenceWorker
        --results--> SessionReport (files) and listeners (the window, the GUI thread's queue)
"""

from __future__ import annotations

import contextlib
import logging
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


class _Tap:
    """Proxy of a source that hands every chunk (or marker list) to listeners too."""

    def __init__(self, inner: Any, method: str) -> None:
        self._inner = inner
        self._method = method
        self.listeners: list[Callable[..., None]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self):
        data, ts = self._inner.read()
        if ts.size:
            for cb in self.listeners:
                cb(data, ts)
        return data, ts

    def pull(self):
        marks = self._inner.pull()
        if marks:
            for cb in self.listeners:
                cb(marks)
        return marks


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
    ) -> None:
        from bci_app.acquisition.acquisition import Acquisition
        from bci_app.acquisition.epocher import Epocher

        cfg = inference or InferenceConfig()
        self.reconstructor = reconstructor
        self.raw_source = source
        self._cpu_threads = cfg.cpu_threads
        self._realtime: contextlib.ExitStack | None = None
        self.realtime: dict[str, object] = {}
        self.source = _Tap(source, "read")
        self.markers = markers if markers is None or markers is source else _Tap(markers, "pull")
        if markers is source:
            self.markers = self.source
        self.mapper = mapper or MarkerMapper()
        self.epocher = Epocher(reconstructor.spec, self.mapper, buffer_seconds=buffer_seconds)
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
        self.started = False

    # ------------------------------------------------------------------ listeners
    def on_eeg(self, cb: Callable[[np.ndarray, np.ndarray], None]) -> None:
        self.source.listeners.append(cb)

    def on_markers(self, cb: Callable[[list[tuple[str, float]]], None]) -> None:
        if isinstance(self.markers, _Tap) and self.markers is not self.source:
            self.markers.listeners.append(cb)

    def on_result(self, cb: Callable[[InferenceResult], None]) -> None:
        self._result_listeners.append(cb)

    def on_error(self, cb: Callable[[BaseException, Any], None]) -> None:
        self.worker.add_error_callback(cb)

    # ------------------------------------------------------------------ flow
    def _on_trial(self, trial) -> None:  # acquisition thread: never blocks (default policy)
        if self.paused:
            return
        self.worker.submit(trial)

    def _on_result(self, result: InferenceResult) -> None:
        self.report.add(result)
        for cb in list(self._result_listeners):
            try:
                cb(result)
            except Exception:
                log.exception("result listener failed")
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

    def start(self, check: bool = True) -> Pipeline:
        """Warm the model up, connect the source (checking it against the bundle), start."""
        on_cpu = getattr(getattr(self.reconstructor, "device", None), "type", "cpu") == "cpu"
        self._realtime = contextlib.ExitStack()
        self.realtime = self._realtime.enter_context(
            realtime_settings(cpu_threads=self._cpu_threads, torch_threads=on_cpu))
        self.worker.start(wait=True)
        src = self.raw_source
        if getattr(src, "state", "disconnected") == "disconnected":
            src.connect()
        if check and hasattr(self.reconstructor, "check_compatible"):
            self.reconstructor.check_compatible(list(src.ch_names), float(src.sfreq),
                                                self.reconstructor.spec.n_times)
        self.acquisition.start()
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
        self.report.samples_lost = int(self.acquisition.stats.get("samples_lost", 0))
        self.started = False
        if self._realtime is not None:  # restore the process settings start() changed
            self._realtime.close()
            self._realtime = None

    def set_recorder(self, recorder: Any) -> Any:
        """Swap the recorder (None to stop recording); returns the previous one, closed."""
        old, self.acquisition.recorder = self.acquisition.recorder, recorder
        if old is not None:
            old.close()
        return old

    def stats(self) -> dict[str, Any]:
        a = self.acquisition.stats
        w = self.worker.stats()
        return {
            "state": a.get("state", "?"),
            "samples_lost": a.get("samples_lost", 0),
            "queue_depth": w["queue_depth"],
            "dropped": w["dropped"],
            "rejected": sum(w["rejected"].values()) + w["errors"],
            "reconstructed": w["reconstructed"],
            "trials": a.get("trials", 0),
            "device": str(getattr(self.reconstructor, "device", "?")),
            "recording": self.acquisition.recorder is not None,
            "last_error": w["last_error"],
        }
