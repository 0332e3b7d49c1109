"""Build the book: vendor its scripts, execute every chapter, write ``_build/html``; exit non-zero on any error.

Used by ``make book`` and by the tests (``tests/book_build.py``), so both build the same way:

- ``scripts/vendor_js.py`` first (the pages' scripts come from npm packages, never a CDN);
- a fresh build id in ``DMF2MEL_BUILD`` for the chapters' kernels: a cached training run that fails in one
  chapter is then reported by the later chapters of the same build instead of being trained again in each
  (:mod:`dmf2mel.runs`);
- ``jupyter-book build --all -W -n --keep-going .``: every chapter executes, and a cell error or a warning fails
  the build;
- ``_build/.book-build-ok`` is written only after a build that succeeded;
- after a failed build, the page of every chapter that failed to execute is removed from ``_build/html`` (its
  traceback stays in ``_build/html/reports/``), so that no half-executed page is left looking complete.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = ROOT / "_build" / ".book-build-ok"
HTML = ROOT / "_build" / "html"
FAILURE_LOG = ".err.log"  # myst-nb's report of a notebook whose execution failed, under html/reports/


def jupyter_book() -> str:
    candidate = Path(sys.executable).parent / "jupyter-book"
    return str(candidate) if candidate.exists() else "jupyter-book"


def build_command(source: Path, path_output: Path | None = None) -> list[str]:
    """The ``jupyter-book build`` command of a book whose root is ``source``: warnings and cell errors fail it."""
    command = [jupyter_book(), "build", "--all", "-W", "-n", "--keep-going", str(source)]
    return command + (["--path-output", str(path_output)] if path_output is not None else [])


def vendor() -> int:
    """Vendor the pages' scripts from npm (``scripts/vendor_js.py``); its exit status."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "vendor_js.py")], cwd=ROOT, check=False)
    if result.returncode != 0:
        print("error: vendoring the book's JavaScript failed (see above)", file=sys.stderr)
    return result.returncode


def withdraw_failed_pages(html: Path = HTML) -> list[Path]:
    """Remove from ``html`` the page of every chapter with an execution failure report; return the removed pages."""
    removed = []
    for report in sorted((html / "reports").rglob(f"*{FAILURE_LOG}")):
        relative = report.relative_to(html / "reports").as_posix().removesuffix(FAILURE_LOG)
        page = html / f"{relative}.html"
        if page.is_file():
            page.unlink()
            removed.append(page)
    return removed


def main() -> int:
    vendored = vendor()
    if vendored != 0:
        return vendored
    STAMP.unlink(missing_ok=True)
    shutil.rmtree(HTML / "reports", ignore_errors=True)  # an earlier build's failure reports name no page of this one
    env = dict(os.environ, DMF2MEL_BUILD=f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    build = subprocess.run(build_command(Path(".")), cwd=ROOT, env=env, check=False)
    minutes = (time.perf_counter() - started) / 60
    if build.returncode != 0:
        withdrawn = [page.relative_to(HTML).as_posix() for page in withdraw_failed_pages()]
        print(
            f"error: the book build failed after {minutes:.1f} min (exit {build.returncode}); "
            "the first failing chapter is named above"
            + (f"; removed its half-executed pages from _build/html: {', '.join(withdrawn)}" if withdrawn else ""),
            file=sys.stderr,
        )
        return build.returncode
    STAMP.parent.mkdir(exist_ok=True)
    STAMP.touch()
    print(f"built the book in {minutes:.1f} min: {ROOT / '_build' / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
