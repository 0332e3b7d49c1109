"""Make mamba-ssm's ``setup.py`` compile its CUDA extension for one GPU architecture instead of nine.

``setup.py`` of mamba-ssm 2.x lists its ``-gencode`` targets by hand (nine of them, sm_75 up to sm_121, with
CUDA 13), so a build from the source archive compiles every kernel once per architecture. For a check on one GPU
only its own architecture is needed: on a 16-core H200 machine the one-architecture build took under 3 minutes.
The script inserts one line that replaces the list just before ``setup.py`` uses it, and refuses a ``setup.py`` it
does not recognise rather than guessing. ``benchmarks/gpu_check.sh`` runs it when given ``MAMBA_SDIST``.

Usage: ``python benchmarks/mamba_one_arch.py path/to/mamba_ssm-X/setup.py [--arch 90]`` (default: the
architecture of the GPU torch sees).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

#: The comment that follows the architecture list in mamba-ssm's setup.py (2.2 and 2.3).
ANCHOR = "    # HACK: The compiler flag -D_GLIBCXX_USE_CXX11_ABI"


def restrict(text: str, arch: str) -> str:
    """``setup.py``'s text with its ``-gencode`` list replaced by ``arch`` alone (CUDA builds; ROCm is untouched)."""
    if text.count(ANCHOR) != 1:
        raise ValueError(f"expected the line {ANCHOR.strip()!r} once, found it {text.count(ANCHOR)} times")
    if "cc_flag" not in text:
        raise ValueError("expected a cc_flag list of -gencode targets, found none")
    line = f'    if not HIP_BUILD:\n        cc_flag = ["-gencode", "arch=compute_{arch},code=sm_{arch}"]\n\n'
    return text.replace(ANCHOR, line + ANCHOR)


def _fail(message: str) -> None:
    print(f"mamba_one_arch.py: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("setup_py", type=Path)
    parser.add_argument("--arch", help="compute capability without the dot, e.g. 90 (default: the visible GPU's)")
    args = parser.parse_args(argv)
    arch = args.arch
    if arch is None:
        import torch

        if not torch.cuda.is_available():
            _fail("no --arch given and torch sees no CUDA GPU to take it from")
        arch = "".join(map(str, torch.cuda.get_device_capability()))
    if not re.fullmatch(r"\d{2,3}a?", arch):
        _fail(f"--arch expects a compute capability such as 90, found {arch!r}")
    if not args.setup_py.is_file():
        _fail(f"{args.setup_py}: expected mamba-ssm's setup.py, found no such file")
    try:
        text = restrict(args.setup_py.read_text(encoding="utf-8"), arch)
    except ValueError as error:
        _fail(f"{args.setup_py}: {error}")
    args.setup_py.write_text(text, encoding="utf-8")
    print(f"mamba_one_arch.py: {args.setup_py} now compiles for sm_{arch} alone")


if __name__ == "__main__":
    main()
