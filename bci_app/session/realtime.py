"""Process-wide settings for real-time work, in one place, applied while a live session
runs and restored when it ends (:func:`realtime_settings`).

- BLAS threads: the live path calls BLAS on tiny matrices every few milliseconds (the
  virtual subject's source mixing, filter bookkeeping). OpenBLAS then keeps a worker thread
  spinning between calls, measured to burn a whole core of a 2-core machine (virtual subject
  alone: 1.0 core with the default threads, 0.10 with one) and to double the demo's
  end-to-end latency. torch has its own thread pool and is not affected.
- The interpreter's thread switch interval: the inference thread gives the GIL up and
  takes it back at every torch op; with the acquisition threads busy each take-back waited
  up to the default 5 ms.
- torch's intra-op threads on CPU inference: all cores but one (the acquisition and GUI
  threads need one), unless ``cpu_threads`` says otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005


def default_cpu_threads() -> int:
    """All cores this process may use but one (at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


@contextlib.contextmanager
def realtime_settings(*, blas_threads: int = 1, cpu_threads: int | None = None,
                      torch_threads: bool = True) -> Iterator[dict[str, object]]:
    """Apply the real-time process settings; restore the previous ones on exit.

    Parameters
    ----------
    blas_threads : int
        BLAS (OpenBLAS/MKL) threads while the session runs.
    cpu_threads : int | None
        torch intra-op threads (None: :func:`default_cpu_threads`).
    torch_threads : bool
        False leaves torch's thread count alone (GPU inference).

    Yields the settings in force, for logs and reports.
    """
    if cpu_threads is not None and cpu_threads < 1:
        raise ValueError(f"cpu_threads must be >= 1, got {cpu_threads}")
    applied: dict[str, object] = {}
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            log.warning("threadpoolctl not installed: cannot limit BLAS threads")
        else:
            # threadpool_limits restores the previous limits when its context exits
            stack.enter_context(threadpool_limits(limits=int(blas_threads), user_api="blas"))
            applied["blas_threads"] = int(blas_threads)
        old_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(old_interval, SWITCH_INTERVAL_S))
        stack.callback(sys.setswitchinterval, old_interval)
        applied["switch_interval_s"] = sys.getswitchinterval()
        if torch_threads:
            import torch

            old_threads = torch.get_num_threads()
            n = int(cpu_threads or default_cpu_threads())
            torch.set_num_threads(n)
            stack.callback(torch.set_num_threads, old_threads)
            applied["torch_threads"] = n
        yield applied
