"""Where numba keeps the package's compiled kernels, so that importing dmf2mel never fails for want of a cache.

The CPU kernels are compiled with ``cache=True``: numba writes them next to their source (``__pycache__``) or, when
the package is read-only (an installed package, a shared course machine), under the user's cache
(``~/.cache/numba``). When neither can be written (a read-only package and an unwritable home, as in a container or
a batch job), numba refuses at import time with "cannot cache function ...: no locator available". :func:`configure`,
run when dmf2mel is imported, then points numba at a folder of this user under the system's temporary folder (the
kernels are compiled again after a reboot, nothing worse). ``NUMBA_CACHE_DIR``, when set, is always respected.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

#: The folders holding the package's cached kernels (their ``__pycache__`` is where numba writes first).
_KERNEL_FOLDERS = ("models", "models/scan")


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, or (when it does not exist yet) in the folder above it."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".dmf2mel-write-test-"):
            return True
    except OSError:
        return False


def _user_cache() -> Path | None:
    """numba's user-wide cache folder (``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``), None without a home."""
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba"
    except RuntimeError:  # no home directory known
        return None


def fallback_dir() -> Path:
    """The folder used when numba can write nowhere else: ``$TMPDIR/dmf2mel-numba-UID``."""
    return Path(tempfile.gettempdir()) / f"dmf2mel-numba-{os.getuid()}"


def configure() -> Path | None:
    """Point numba's cache at :func:`fallback_dir` when it could write neither beside the package nor in the user's
    cache; returns that folder, or None when nothing needed to change."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    package = Path(__file__).parent
    if all(_writable(package / name / "__pycache__") for name in _KERNEL_FOLDERS):
        return None
    user = _user_cache()
    if user is not None and _writable(user):
        return None
    try:
        folder = fallback_dir()
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None  # no usable temporary folder either: numba will say so
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba was imported before dmf2mel: it read its settings already
        config.CACHE_DIR = str(folder)
    return folder
