"""numba kernels compiled twice, for several threads and for one: :func:`parallel_kernel`.

A kernel compiled with ``parallel=True`` hands its ``prange`` loop to numba's thread pool even when only one thread
may run (``numba.set_num_threads(1)``, which :func:`dmf2mel.models.scan.cpu.numba_threads` sets whenever torch runs
on one thread): the calling thread waits while a pool thread, often on another core and so without the inputs in
its caches, does the work. On a 2-core machine that cost about 60 microseconds per call of the KAN feature kernel
(1024 tokens x 32 inputs: 0.16 ms through the pool, 0.09 ms compiled without ``parallel``, both on one thread), and
a training step of the small config, batch 8, calls the package's kernels some 400 times.

:func:`parallel_kernel` compiles the function both ways, the ``prange`` loops becoming plain loops in the serial
copy, and each call picks the serial copy when numba's thread count is one. The two copies run the same code: a
kernel whose ``prange`` iterations are independent gives the same numbers from both, and one with a ``prange``
reduction may differ by rounding only.
"""

from __future__ import annotations

import functools
import types

import numba


class ParallelKernel:
    """A function compiled by numba with ``parallel=True`` (:attr:`parallel`) and without (:attr:`serial`)."""

    def __init__(self, py_func, options: dict):
        self.py_func = py_func
        self.parallel = numba.njit(parallel=True, **options)(py_func)
        # a copy of the function under its own name, so that numba's on-disk cache keeps the two compilations apart
        copy = types.FunctionType(
            py_func.__code__,
            py_func.__globals__,
            f"{py_func.__name__}_serial",
            py_func.__defaults__,
            py_func.__closure__,
        )
        copy.__qualname__ = f"{py_func.__qualname__}_serial"
        copy.__module__ = py_func.__module__
        self.serial = numba.njit(parallel=False, **options)(copy)
        functools.update_wrapper(self, py_func)

    def __call__(self, *args):
        kernel = self.serial if numba.get_num_threads() == 1 else self.parallel
        return kernel(*args)


def parallel_kernel(**options):
    """Decorator: ``numba.njit(parallel=True, **options)``, with a serial twin for one thread (module docstring)."""

    def compile_twice(py_func) -> ParallelKernel:
        return ParallelKernel(py_func, options)

    return compile_twice
