"""Tianshou's numba kernels (buffer indexing, GAE, n-step returns, the prioritized buffer's segment
tree) cached on disk.

Tianshou decorates them with a plain ``@njit``, so every new process compiles them again (about 5 s
on this project's 2-core machine, per run and per Ray/sweep worker). numba's own
``Dispatcher.enable_caching()`` turns on its on-disk cache for them (next to Tianshou's sources, or
numba's user-wide cache where that is read-only); a later process loads the compiled code instead.
"""

from __future__ import annotations

_done = False


def enable() -> None:
    """Turn on numba's on-disk cache for Tianshou's kernels (idempotent; before their first call)."""
    global _done
    if _done:
        return
    _done = True
    import tianshou.algorithm.algorithm_base as algorithm_base
    from tianshou.data.buffer import manager
    from tianshou.data.utils import segtree

    for module, name in ((manager, "_prev_index"), (manager, "_next_index"), (algorithm_base, "_gae"),
                         (algorithm_base, "_nstep_return"), (segtree, "_setitem"), (segtree, "_reduce"),
                         (segtree, "_get_prefix_sum_idx")):
        kernel = getattr(module, name, None)
        # a kernel Tianshou renamed or stopped jitting is simply compiled as before
        if callable(getattr(kernel, "enable_caching", None)):
            kernel.enable_caching()
