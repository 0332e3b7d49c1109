"""Build the book once for the tests that need it (test_book.py, test_browser.py), or reuse a fresh build.

A build is reused when it succeeded (the stamp file exists) and no input changed since: the
configuration, the table of contents, the pages, the notebooks, the package, the vendored scripts.
Concurrent test processes (pytest-xdist) wait for one another through a file lock.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
HTML = BUILD / "html"
STAMP = BUILD / ".book-build-ok"  # written only after a build that exited 0
LOG = BUILD / "book-build.log"
INPUT_GLOBS = (
    "_config.yml",
    "_toc.yml",
    "book/*.md",
    "book/*.bib",
    "book/static/*",
    "book/_ext/*.py",
    "notebooks/*.ipynb",
    "dmf2mel/**/*.py",
    "book/_vendor/VERSIONS",
    "scripts/vendor_js.py",
    "scripts/build_book.py",
)
BUILD_TIMEOUT_S = 3600  # a busy machine: each chapter cell has its own, tighter limit (_config.yml)
# A failed build is reported once per test process and inputs; later tests fail fast with the same message.
_failures: dict[float, str] = {}


def toc_files() -> list[str]:
    """Every document in ``_toc.yml`` (the root first), as paths without suffix, e.g. ``notebooks/01_...``."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [str(Path(f).with_suffix("")) for f in files]


def newest_input() -> float:
    return max(path.stat().st_mtime for pattern in INPUT_GLOBS for path in ROOT.glob(pattern))


def is_fresh() -> bool:
    return STAMP.is_file() and STAMP.stat().st_mtime > newest_input()


def ensure_built() -> Path:
    """Build the book unless a fresh successful build exists; return ``_build/html``.

    Raises AssertionError with the build log's tail when vendoring or the build fails.
    """
    BUILD.mkdir(exist_ok=True)
    inputs = newest_input()
    if inputs in _failures:
        raise AssertionError(_failures[inputs])
    with open(BUILD / ".book-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_fresh():
            return HTML
        with open(LOG, "w") as log:
            # the same build as `make book` (vendoring, a build id for the cached runs, --all, -W), stamped on success
            build = subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "build_book.py")],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT_S,
            )
        if build.returncode != 0:
            tail = LOG.read_text()[-5000:]
            _failures[inputs] = f"jupyter-book build failed (exit {build.returncode}); log {LOG}:\n{tail}"
            raise AssertionError(_failures[inputs])
        return HTML
