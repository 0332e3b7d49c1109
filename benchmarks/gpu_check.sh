#!/usr/bin/env bash
# The GPU checks in one call, on a CUDA machine with the project installed (make install):
#   1. install the [cuda] extra (mamba-ssm, causal-conv1d), unless SKIP_CUDA_EXTRA=1; with MAMBA_SDIST=path to
#      mamba-ssm's source archive (mamba_ssm-X.tar.gz from PyPI), build mamba-ssm alone from it instead, with no
#      network and for this GPU's architecture only (benchmarks/mamba_one_arch.py; under 3 minutes on 16 cores);
#   2. run the CUDA scan tests and the mamba_ssm compatibility test (they skip, with their reason, where they cannot run);
#   3. time a paper-profile training step at batch 16 on the GPU: benchmarks/results/gpu.json.
# Exits 2 at once, saying so, when torch sees no CUDA GPU. Where the project is not installed (a bare GPU machine
# with torch), PY=python3 PYTHONPATH=$PWD runs it from the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: torch sees no CUDA GPU here; nothing to check" >&2
    exit 2
fi
if [ -n "${MAMBA_SDIST:-}" ]; then
    build="$(mktemp -d)"
    tar xzf "$MAMBA_SDIST" -C "$build"
    source_dir="$(echo "$build"/*/)"
    "$PY" benchmarks/mamba_one_arch.py "$source_dir/setup.py"
    # MAMBA_FORCE_BUILD: compile here rather than look for a prebuilt wheel online
    (cd "$source_dir" && MAMBA_FORCE_BUILD=TRUE "$PY" -m pip install -q --no-index --no-deps --no-build-isolation .)
elif [ "${SKIP_CUDA_EXTRA:-0}" != 1 ]; then
    # mamba-ssm compiles its CUDA extension from source unless a matching wheel is at hand (minutes)
    "$PY" -m pip install -q --no-build-isolation -e '.[cuda]' || echo "gpu_check.sh: the [cuda] extra did not install; continuing without mamba-ssm" >&2
fi
"$PY" -m pytest -q -rs tests/models/test_scan_cuda.py tests/models/test_mamba_ssm_compat.py
"$PY" benchmarks/gpu_step.py --preset paper --batch 16 --repeats 5
