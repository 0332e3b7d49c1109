"""scripts/build_book.py without building: after a failed build no half-executed chapter page is left."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
build_book = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(build_book)


def test_the_pages_of_chapters_that_failed_are_withdrawn(tmp_path):
    html = tmp_path / "html"
    for page in ("index.html", "notebooks/10_assembled_model.html", "notebooks/11_training.html"):
        (html / page).parent.mkdir(parents=True, exist_ok=True)
        (html / page).write_text("<html></html>")
    report = html / "reports" / "notebooks" / "11_training.err.log"  # where myst-nb saves a failed chapter's traceback
    report.parent.mkdir(parents=True)
    report.write_text("Traceback ...")
    assert build_book.withdraw_failed_pages(html) == [html / "notebooks" / "11_training.html"]
    assert not (html / "notebooks" / "11_training.html").exists() and report.exists()
    assert (html / "notebooks" / "10_assembled_model.html").exists() and (html / "index.html").exists()


def test_the_build_command_fails_on_warnings_and_can_write_elsewhere(tmp_path):
    command = build_book.build_command(Path("."))
    assert command[1:] == ["build", "--all", "-W", "-n", "--keep-going", "."]
    assert build_book.build_command(tmp_path / "site", tmp_path / "out")[-2:] == [
        "--path-output",
        str(tmp_path / "out"),
    ]
