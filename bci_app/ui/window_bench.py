"""``bci-app bench --mode window``: how often the live window redraws under a realistic feed.

A thread pushes ``n_channels`` of EEG at ``sfreq`` in 10 ms chunks, as the acquisition
thread does: microvolt-scale noise and alpha on top of per-channel electrode offsets of
tens of millivolts and slow drift, plus a stimulus marker every 200 ms. The window runs
its own timer (offscreen works); the figure is redraws per second over ``seconds``, with
the process CPU time per redraw (GUI and feeder together).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


def realistic_eeg(rng: np.random.Generator, n_channels: int, n: int, t: np.ndarray,
                  offsets: np.ndarray) -> np.ndarray:
    """``[C, n]`` volts: 10 uV noise, 10 Hz alpha, 0.1 Hz drift, per-channel offsets."""
    x = rng.standard_normal((n_channels, n)) * 10e-6
    x += 8e-6 * np.sin(2 * np.pi * 10.0 * t)[None, :]
    x += 30e-6 * np.sin(2 * np.pi * 0.1 * t)[None, :]
    return (x + offsets[:, None]).astype(np.float32)


def measure_window_fps(seconds: float = 5.0, n_channels: int = 128, sfreq: float = 1000.0,
                       visible: int = 32) -> dict[str, Any]:
    """Redraw rate of the live window while a thread feeds it (see module docs)."""
    from pylsl import local_clock

    from bci_app.ui.qt import ensure_app
    from bci_app.ui.window import LiveWindow

    app = ensure_app()
    win = LiveWindow([f"EEG{i:03d}" for i in range(n_channels)], sfreq, visible=visible)
    win.show()
    stop = threading.Event()
    offsets = np.random.default_rng(1).uniform(-30e-3, 30e-3, n_channels)

    def feed() -> None:
        rng = np.random.default_rng(0)
        t0 = local_clock()
        n = 0
        while not stop.is_set():
            due = int((local_clock() - t0) * sfreq)
            if due - n >= 10:
                k = due - n
                ts = t0 + (n + np.arange(k)) / sfreq
                win.push_eeg(realistic_eeg(rng, n_channels, k, ts - t0, offsets), ts)
                if (n // 200) != ((n + k) // 200):
                    win.push_marker(f"c{(n // 200) % 40:02d}_i00", float(ts[-1]))
                n += k
            stop.wait(0.005)

    th = threading.Thread(target=feed, name="window-bench-feed", daemon=True)
    th.start()
    try:
        t_end = time.perf_counter() + 1.0
        while time.perf_counter() < t_end:  # settle (first layout, filter start)
            app.processEvents()
            time.sleep(0.001)
        f0, t0, c0 = win.frames, time.perf_counter(), time.process_time()
        t_end = t0 + seconds
        while time.perf_counter() < t_end:
            app.processEvents()
            time.sleep(0.001)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        frames = win.frames - f0
    finally:
        stop.set()
        th.join(1)
        win.close()
        win.deleteLater()
        app.processEvents()
    return {
        "traces": n_channels,
        "visible_rows": win.traces.n_visible,
        "fps": round(frames / elapsed, 1),
        "seconds": round(elapsed, 1),
        # CPU time per frame (GUI + feeder): the fps one free core would reach is 1000 / this
        "cpu_ms_per_frame": round(1000.0 * cpu / max(1, frames), 1),
        "frame_ms": win.frame_ms,
        "display_dropped": win.display_dropped,
    }
