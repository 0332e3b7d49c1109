"""Choosing a scan backend: the GPU fallback says so once; numba's threading layer is chosen at the first run, not import."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dmf2mel.models import scan

REPO = Path(__file__).resolve().parents[2]


class FakeCudaTensor:
    is_cuda = True


def test_gpu_without_mamba_ssm_warns_once_and_uses_the_reference(monkeypatch):
    monkeypatch.setattr(scan, "load_mamba_ssm_scan", lambda: (None, "ImportError: No module named 'mamba_ssm'"))
    scan._warn_reference_on_gpu.cache_clear()
    with pytest.warns(RuntimeWarning, match=r"mamba_ssm.*No module named.*slow reference loop"):
        assert scan._choose_backend(FakeCudaTensor()) == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise
        assert scan._choose_backend(FakeCudaTensor()) == "reference"
    scan._warn_reference_on_gpu.cache_clear()


def test_gpu_with_mamba_ssm_does_not_warn(monkeypatch):
    monkeypatch.setattr(scan, "load_mamba_ssm_scan", lambda: (object(), ""))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scan._choose_backend(FakeCudaTensor()) == "cuda"


def run_python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    environ.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **env)
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_package_leaves_numba_threading_layer_alone():
    code = "import numba, dmf2mel.models, dmf2mel.train; print(numba.config.THREADING_LAYER)"
    assert run_python(code) == "default"


def test_the_first_scan_selects_workqueue_unless_the_user_chose():
    code = (
        "import numba, torch; from dmf2mel.models.scan import selective_scan\n"
        "b, d, n, t = 1, 2, 3, 5\n"
        "selective_scan(torch.randn(b, d, t), torch.randn(b, d, t), -torch.rand(d, n), torch.randn(b, n, t),"
        " torch.randn(b, n, t), backend='cpu')\n"
        "print(numba.threading_layer())"
    )
    assert run_python(code) == "workqueue"
    chose = "import numba; numba.config.THREADING_LAYER = 'safe'\n"
    ask = "from dmf2mel.models.scan import cpu; print(cpu.prefer_workqueue_layer())"
    assert run_python(chose + ask) == "safe"
    assert run_python(ask, NUMBA_THREADING_LAYER="omp") == "omp"
