"""The numba kernels' vector width (dmf2mel.models.vector_width), each case in a fresh process: numba reads its CPU
features once, at its first compilation."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from dmf2mel.models import vector_width

HAS_FULL_SPEED_AVX512 = vector_width.FULL_SPEED_AVX512 in vector_width._host_features().split(",")

PROBE = textwrap.dedent(
    """
    import json, numpy as np, numba
    from numba import njit
    import dmf2mel.models.scan.fast_exp  # what every kernel module imports
    from dmf2mel.models.vector_width import prefer_wide_vectors

    @njit(fastmath=True)
    def dot(a, b):
        total = 0.0
        for i in range(a.size):
            total += a[i] * b[i]
        return total

    a = np.ones(1000, np.float32)
    dot(a, a)
    asm = next(iter(dot.inspect_asm().values()))
    print(json.dumps({"changed": prefer_wide_vectors(), "features": numba.config.CPU_FEATURES, "zmm": "zmm" in asm}))
    """
)


def probe(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME")}
    run = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env={**clean, **env}
    )
    return json.loads(run.stdout)


def test_wide_vectors_where_the_cpu_runs_them_at_full_speed():
    result = probe()
    assert result["changed"] == HAS_FULL_SPEED_AVX512
    if HAS_FULL_SPEED_AVX512:
        assert result["features"].endswith(",-" + vector_width.PREFER_256)
        assert result["zmm"], "LLVM should vectorise with 512-bit registers"
    else:
        assert result["features"] is None


@pytest.mark.skipif(not HAS_FULL_SPEED_AVX512, reason="this CPU keeps LLVM's default vector width anyway")
def test_a_users_numba_cpu_features_win():
    result = probe(NUMBA_CPU_FEATURES=vector_width._host_features())
    assert not result["changed"]
    assert not result["zmm"], "the host's own features keep LLVM's 256-bit preference"
