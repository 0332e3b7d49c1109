"""JupyterLab for a class: ``make lab`` (and the JupyterLab test) start it through this script.

Usage: ``python scripts/lab.py FOLDER [jupyter lab options ...]``, e.g. ``python scripts/lab.py notebooks``.

Offline, JupyterLab's first page would ask every student whether to receive "official Jupyter news" (a feed it
cannot reach) and would look for newer JupyterLab versions. This script turns the news plugin off in the
environment's own JupyterLab settings (``jupyter labextension disable --level=sys_prefix``, which lasts) and
starts JupyterLab without the version check, as root too (``--allow-root``: a container or a course server).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: JupyterLab's plugin that asks about and fetches the news feed.
NEWS_PLUGIN = "@jupyterlab/apputils-extension:announcements"
#: The options every start gets: root allowed, no check for newer JupyterLab versions.
LAB_OPTIONS = ("--allow-root", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")


def jupyter() -> str:
    """The ``jupyter`` command of this Python's environment."""
    return str(Path(sys.executable).with_name("jupyter"))


def disable_news() -> None:
    """Turn the news plugin off for this environment (idempotent)."""
    subprocess.run(
        [jupyter(), "labextension", "disable", "--level=sys_prefix", NEWS_PLUGIN],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main(argv: list[str]) -> None:
    if not argv or not Path(argv[0]).is_dir():
        found = f"{argv[0]!r} is not a folder" if argv else "nothing"
        print(f"lab.py: expected the folder of notebooks to open (e.g. notebooks), found {found}", file=sys.stderr)
        raise SystemExit(2)
    disable_news()
    command = [jupyter(), "lab", *LAB_OPTIONS, *argv[1:], argv[0]]
    os.execv(command[0], command)  # JupyterLab takes this process over (Ctrl+C stops it as before)


if __name__ == "__main__":
    main(sys.argv[1:])
