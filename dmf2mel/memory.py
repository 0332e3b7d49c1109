"""Give big freed tensors back to the system while training: glibc's mmap threshold.

The problem. On Linux, PyTorch's CPU tensors come from glibc's ``malloc``. Blocks above the *mmap threshold* are
mapped on their own and returned to the system when freed; smaller ones are carved out of the process heap, whose
freed parts stay resident and are reused only where a later request fits. glibc raises the threshold by itself (up
to 32 MiB) each time a mapped block is freed, so after the first training step nearly every activation lives in the
heap. A step frees and allocates tensors of many sizes in an order that leaves holes the next requests do not fit,
and the heap keeps growing. In the paper config's batch-16 step (one thread) the heap held 1.8 GB while the tensors
alive took 0.2 GB at the step's start and at most 1.0 GB during it (glibc's ``mallinfo2``); the process's peak
resident memory was 2.4-2.7 GB.

The fix. A fixed threshold (``mallopt(M_MMAP_THRESHOLD, ...)``, which also stops glibc raising it) sends every
block of at least :data:`MMAP_THRESHOLD` bytes to its own mapping, so the large activations go back to the system
as soon as they are freed. Measured on the development machine (2-core Xeon, paper config, batch 16, one thread,
three steps per run): peak resident memory 2.4-2.7 GB -> 2.1-2.2 GB, step time unchanged within the machine's noise.
A 2 MiB threshold cut the peak to 1.4 GB but made the step about 25 % slower (every mapping's pages are faulted in
and zeroed afresh); 16 MiB kept most of the growth. The small config's tensors are mostly below the threshold and
its step does not change. ``benchmarks/speedup.py`` reports the peak of the training step with the setting.

:func:`return_freed_memory` sets it. :func:`dmf2mel.threads.configure`, which every entry point calls to set a
process up for computing (the trainer, the evaluation, the command line, the chapters, the benchmarks), calls it,
so the training-step benchmarks time the step as the trainer runs it. The setting is process-wide and stays for the
life of the process. ``DMF2MEL_MMAP_THRESHOLD`` (bytes; ``0`` or ``off``: leave glibc's default) overrides it.
Other C libraries (macOS, Windows, musl) are left alone.

The price, and where it is avoided. A fresh mapping's pages are faulted in and zeroed by the kernel one 4 KiB page
at a time when first written. For a big result that lives only inside one function (the gradient of a KAN layer's
features, read once by a kernel and dropped) that costs more than computing it: in the small config's step the
(5120, 384) product ``dL/dy @ W`` took 5 ms in a fresh tensor and 1 ms in one already mapped. :func:`scratch` keeps
one such buffer per data type and thread, reused by every call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading

import torch

#: ``mallopt``'s parameter number of the mmap threshold (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
#: Blocks of at least this many bytes get their own mapping: 4 MiB.
MMAP_THRESHOLD = 4 * 2**20
ENV_VAR = "DMF2MEL_MMAP_THRESHOLD"


def _threshold_from_environment() -> int | None:
    """The threshold asked for in :data:`ENV_VAR` (None: switched off), or :data:`MMAP_THRESHOLD`."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return MMAP_THRESHOLD
    if value in ("0", "off"):
        return None
    if not value.isdigit():
        raise ValueError(f"{ENV_VAR}={value!r}: expected a number of bytes, 0 or 'off'")
    return int(value)


@functools.cache
def _glibc():
    """glibc's ``mallopt`` where this process runs on glibc, else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only)
        return libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None


def return_freed_memory() -> int | None:
    """Set glibc's mmap threshold (see the module docstring); returns the threshold set, None where none was."""
    threshold = _threshold_from_environment()
    mallopt = _glibc()
    if threshold is None or mallopt is None:
        return None
    return threshold if mallopt(M_MMAP_THRESHOLD, threshold) == 1 else None


_scratch = threading.local()


def scratch(rows: int, columns: int, dtype: torch.dtype) -> torch.Tensor:
    """A reusable ``(rows, columns)`` CPU buffer of ``dtype`` for a transient result (contents undefined).

    Every call (per thread and data type) hands out the same memory, grown to the largest size asked for so far:
    use it only for a value that is dead before any other code could call this function, e.g. a product written
    with ``out=`` and read once by a kernel in the same function. The buffer stays allocated for the life of the
    thread.
    """
    buffers = _scratch.__dict__.setdefault("buffers", {})
    size = rows * columns
    buffer = buffers.get(dtype)
    if buffer is None or buffer.numel() < size:
        buffers.pop(dtype, None)  # the old buffer goes before the new one is made
        buffer = buffers[dtype] = torch.empty(size, dtype=dtype)
    return buffer[:size].view(rows, columns)


__all__ = ["ENV_VAR", "MMAP_THRESHOLD", "return_freed_memory", "scratch"]
