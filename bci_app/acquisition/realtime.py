"""Process settings for real-time work."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def limit_blas_threads(n: int = 1) -> None:
    """Keep numpy's BLAS (OpenBLAS) to ``n`` threads for this process.

    The live path calls BLAS on tiny matrices every few milliseconds (the virtual
    subject's source mixing, filter bookkeeping). OpenBLAS then keeps a worker thread
    spinning between calls, which was measured to burn a whole core of a 2-core machine
    (virtual subject alone: 1.0 core with the default threads, 0.10 with one) and doubled
    the demo's end-to-end latency. torch has its own thread pool and is not affected.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        logger.warning("threadpoolctl not installed: cannot limit BLAS threads")
        return
    threadpool_limits(limits=int(n), user_api="blas")
