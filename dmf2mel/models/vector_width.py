"""How wide the numba kernels' vectorised loops are: 512-bit registers where the CPU runs them at full speed.

LLVM vectorises the kernels' inner loops (the KAN features, the attention rows, the selective scan, the dropout
masks) for the CPU it compiles on. On CPUs with AVX-512 it still prefers 256-bit registers (its ``prefer-256-bit``
tuning), because the first AVX-512 server chips (Skylake-SP, Cascade Lake) lowered their clock for 512-bit work.
Intel's chips from Sapphire Rapids on (recognised by ``avx512fp16``) do not, and there twice as many lanes per
instruction pay: measured on the development machine (2-core Emerald Rapids, one thread), the small config's
batch-8 training step took 1.01-1.05 s instead of 1.14-1.15 s of CPU time (three runs each, alternating), and the
attention kernel's forward pass at (16, 640, 16) 9.4 ms instead of 12.3 ms.

:func:`prefer_wide_vectors` turns the preference off for numba's code generator, on those CPUs only, by setting
``numba.config.CPU_FEATURES`` to the host's features plus ``-prefer-256-bit``. numba reads it once, when it compiles
its first function in the process, so :mod:`dmf2mel.models.scan.fast_exp`, which every kernel module imports,
calls it at import. It leaves everything alone when ``NUMBA_CPU_FEATURES`` or ``NUMBA_CPU_NAME`` is set (the user
chose), and the setting then applies to any numba code the process compiles later, as those variables would.
numba's on-disk cache keeps machine code per feature string, so cached kernels are not mixed up.
"""

from __future__ import annotations

import functools

import numba

#: The tuning flag that makes LLVM choose 256-bit vectors on AVX-512 CPUs.
PREFER_256 = "prefer-256-bit"
#: A host feature of the CPUs that run 512-bit vectors without lowering their clock (Sapphire Rapids and later).
FULL_SPEED_AVX512 = "+avx512fp16"


def _host_features() -> str:
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    return llvm.get_host_cpu_features().flatten()


@functools.cache
def prefer_wide_vectors() -> bool:
    """Let LLVM use 512-bit vectors in numba code on CPUs that run them at full speed (see the module docstring).

    Returns whether numba's CPU features were changed (once per process; later calls return the first answer).
    """
    if numba.config.CPU_FEATURES is not None or numba.config.CPU_NAME is not None:
        return False
    try:
        features = _host_features()
    except (RuntimeError, OSError):
        return False
    if FULL_SPEED_AVX512 not in features.split(","):
        return False
    numba.config.CPU_FEATURES = f"{features},-{PREFER_256}"
    return True


__all__ = ["prefer_wide_vectors"]
