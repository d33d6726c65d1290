"""Tianshou's numba kernels get numba's on-disk cache (a new process loads them instead of compiling)."""

from __future__ import annotations

import pytest


def test_every_listed_tianshou_kernel_has_the_disk_cache_on():
    numba_caching = pytest.importorskip("numba.core.caching")
    import tianshou.algorithm.algorithm_base as algorithm_base
    from tianshou.data.buffer import manager
    from tianshou.data.utils import segtree

    from guidedrl.train import numba_cache

    numba_cache.enable()
    kernels = [manager._prev_index, manager._next_index, algorithm_base._gae, algorithm_base._nstep_return,
               segtree._setitem, segtree._reduce, segtree._get_prefix_sum_idx]
    for kernel in kernels:
        assert not isinstance(kernel._cache, numba_caching.NullCache), kernel.py_func.__qualname__
