"""One BLAS/OpenMP thread per worker process, set at run time.

Workers do small, latency-bound matrix work and several run per machine. Threaded
OpenBLAS next to torch's OpenMP pool made a (42x64)@(64x250) product take 21 ms instead of
0.03 ms on the 2-core CI machine, so every worker pins both pools to one thread (unless
SLATESTREAM_THREADS says otherwise), whatever was imported first.
"""

from __future__ import annotations

import os

_done = False


def limit_threads(n: int | None = None) -> int:
    """Limit BLAS and torch intra-op threads to n (default env SLATESTREAM_THREADS or 1)."""
    global _done
    n = n or int(os.environ.get("SLATESTREAM_THREADS", "1"))
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    import torch

    torch.set_num_threads(n)
    _done = True
    return n
