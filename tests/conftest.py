"""Shared fixtures: one tiny simulated corpus per test session (the real SparrKULee layout), and Debian's Chromium
for the tests that open pages in a browser."""

import os
from pathlib import Path

import pytest

# No progress bars in the test output. (Thread counts follow dmf2mel.threads: the cores other programs leave
# free; set DMF2MEL_NUM_THREADS or OMP_NUM_THREADS to fix them.)
os.environ.setdefault("TQDM_DISABLE", "1")

TINY = dict(n_subjects=4, n_held_out=1, n_stories=2, minutes=1.0)


def chapter_prose(notebook: str, heading: str) -> str:
    """The markdown cell of ``notebooks/<notebook>`` that starts with ``heading``, its whitespace collapsed: the
    written prose a test holds to the committed reports."""
    import nbformat

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / notebook, as_version=4)
    (prose,) = [cell.source for cell in nb.cells if cell.cell_type == "markdown" and cell.source.startswith(heading)]
    return " ".join(prose.split())


def held_out_by_subject(row: dict) -> dict[str, float]:
    """Each held-out subject's paper r in a quality report's row, the mean over its seeds."""
    seeds = row["unknown"]["per_seed"]
    return {s: sum(seed["per_subject"][s] for seed in seeds) / len(seeds) for s in seeds[0]["per_subject"]}


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A small ``teaching`` corpus: 3 known subjects + 1 held out, 2 stories of 1 minute."""
    from dmf2mel.data.corpus import simulate_corpus

    return simulate_corpus(
        tmp_path_factory.mktemp("corpus") / "teaching", preset="teaching", seed=0, progress=False, **TINY
    )


@pytest.fixture(scope="module")
def one_thread():
    """One thread for every run of a module that asks for it (``pytestmark = pytest.mark.usefixtures("one_thread")``),
    subprocesses included: a resumed run equals an uninterrupted one bit for bit only at one fixed thread count, and
    the package's policy (dmf2mel.threads) picks the count from the load of the moment (a float reduction split over
    two threads rounds differently)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DMF2MEL_NUM_THREADS", "1")
        yield


# Debian's Chromium, driven through Playwright (never `playwright install`, which downloads a browser).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module; skips with the reason when Chromium or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
            ".ci/run does this where it can"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.txt)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
