"""Cached folders built once: the built-in corpora (:mod:`dmf2mel.data.corpus`) and the trained runs
(:mod:`dmf2mel.runs`) share these rules.

An *entry* is a folder ``ROOT/STEM-DIGEST``: the stem says what it is (``teaching``, or a run's corpus,
model, profile, epochs and seed), the digest hashes everything that decides its content (parameters,
code, library versions). Entries of the same stem with another digest are older versions.

- **Built aside, renamed into place** (:func:`build_entry`): the content is written to a temporary folder
  ``ROOT/.NAME.tmp-XXXX`` and renamed onto ``ROOT/NAME`` only when it is complete, so a killed process
  never leaves half an entry; a build that fails leaves nothing behind.
- **Built once** (:func:`entry_lock`): a process holds ``ROOT/.NAME.lock`` (an exclusive ``flock``) while
  it checks and builds an entry; another process asking for the same entry waits, and says for whom
  (the holder writes its pid and start time into the lock file). The lock file is removed when released.
- **Stale entries removed only when unused** (:func:`mark_used`, :func:`remove_stale`): each hand-out
  touches ``NAME/.last_used``; an older version is deleted only after nobody has asked for it for
  :data:`UNUSED_FOR_S`, and a temporary folder only when it is older than any build takes (its build
  was killed).

POSIX only (``fcntl``), like the rest of the book's tooling.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from dmf2mel.errors import UserError

#: The file whose modification time records an entry's last use.
LAST_USED_FILE = ".last_used"
#: An older version of an entry is deleted once nobody has asked for it for this long.
UNUSED_FOR_S = 24 * 3600.0
#: A temporary folder this old belongs to a killed build (longer than any build takes).
STALE_TEMP_S = 6 * 3600.0


def family(name: str) -> str:
    """The stem of an entry name: ``"teaching-0123456789ab"`` -> ``"teaching"``."""
    return name.rsplit("-", 1)[0]


def _temp_prefix(name: str) -> str:
    return f".{name}.tmp-"


def lock_path(root: Path, name: str) -> Path:
    """The lock file of the entry ``root/name``."""
    return Path(root) / f".{name}.lock"


@contextlib.contextmanager
def entry_lock(root: str | Path, name: str, doing: str, verbose: bool = True) -> Iterator[None]:
    """Hold the entry's lock: one process checks and builds ``root/name``, the others wait.

    Parameters
    ----------
    root, name : the entry ``root/name`` (the lock is ``root/.name.lock``).
    doing : str
        What the holder does, for the waiting message: ``"waiting for process 123 (since 10:00:00),
        which is {doing}"``.
    verbose : bool
        Print that message (once) when this process has to wait.
    """
    path = lock_path(Path(root), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    said = False
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if verbose and not said:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                print(f"waiting for {holder}, which is {doing}", flush=True)
                said = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        # The holder before us may have removed the file on release: then lock the one now at the path.
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(current, os.fstat(handle.fileno())):
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} (since {time.strftime('%H:%M:%S')})")
        handle.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before unlocking, so a waiter sees that this file is retired
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def build_entry(folder: str | Path, build: Callable[[Path], None]) -> Path:
    """Build the entry ``folder`` aside and rename it into place; call it while holding :func:`entry_lock`.

    Parameters
    ----------
    folder : path
        The entry. An existing folder there (an incomplete or unverifiable copy) is replaced.
    build : callable (path) -> None
        Writes the complete entry at ``path`` (a folder that does not exist yet, inside a temporary
        folder beside ``folder``). If it raises, the temporary folder is removed and ``folder`` is left
        as it was.

    Returns
    -------
    Path
        ``folder``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=_temp_prefix(folder.name), dir=folder.parent))
    try:
        fresh = work / folder.name
        build(fresh)
        replace_folder(fresh, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def replace_folder(source: str | Path, target: str | Path) -> None:
    """Move the finished folder ``source`` onto ``target`` (absent, or an older copy that is deleted).

    Both must be on the same file system. The older copy is first moved aside, so ``target`` is at any
    moment either the old or the new folder, never a mixture.
    """
    source, target = Path(source), Path(target)
    if not target.exists():
        os.rename(source, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / target.name)
    os.rename(source, target)
    shutil.rmtree(old, ignore_errors=True)


def unlisted(folder: str | Path, listed: set[str]) -> list[str]:
    """What ``folder`` holds besides ``listed`` (paths relative to it, ``/``-separated), sorted.

    A folder counts as listed when a listed file lies inside it; an empty folder or any file not listed is returned.
    """
    folder = Path(folder)
    parents = {str(Path(name).parent.as_posix()) for name in listed}
    ancestors = set()
    for parent in parents:
        while parent not in ("", "."):
            ancestors.add(parent)
            parent = Path(parent).parent.as_posix()
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_dir() and not path.is_symlink():
            if relative not in ancestors:
                found.append(relative + "/")
        elif relative not in listed:
            found.append(relative)
    # report a foreign folder once, not with every file inside it
    return [
        name
        for name in found
        if not any(other.endswith("/") and name != other and name.startswith(other) for other in found)
    ]


def check_replaceable(out: Path, written_by: Callable[[Path], set[str] | None], what: str) -> None:
    """Raise :class:`~dmf2mel.errors.UserError` unless ``out`` is absent, an empty folder, or ``what`` (whose files
    ``written_by`` lists) holding nothing else: a command replaces only what it wrote itself."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    listed = written_by(out)
    if listed is None:
        raise UserError(
            f"out: {out} must be a new or empty folder, or {what} to replace; it holds other files "
            "(nothing was changed)",
            parameter="out",
        )
    foreign = unlisted(out, listed)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UserError(
            f"out: {out} is {what}, but it also holds what the corpus did not write ({shown}); it would be deleted "
            f"with {what.split(' ', 1)[-1]}, so nothing was changed: move it elsewhere, or choose another folder",
            parameter="out",
        )


def remove_leftovers(root: str | Path, name: str) -> list[Path]:
    """Delete what killed builds of ``root/name`` left beside it: ``.NAME.tmp-*`` and ``.NAME.old-*`` folders.

    Call it while holding the entry's :func:`entry_lock`: every build of ``root/name`` holds that lock, so such a
    folder then belongs to no running process.
    """
    removed = []
    for prefix in (_temp_prefix(name), f".{name}.old-"):
        for path in Path(root).glob(prefix + "*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def mark_used(folder: str | Path) -> None:
    """Record that ``folder`` is handed out now (best effort: a read-only cache still works)."""
    with contextlib.suppress(OSError):
        (Path(folder) / LAST_USED_FILE).touch()


def last_used(folder: str | Path, fallbacks: tuple[str, ...] = ()) -> float:
    """When ``folder`` was last handed out: the time of ``.last_used``, else of the first of ``fallbacks``
    that exists (for entries written before ``.last_used`` existed), else 0 (long ago)."""
    for name in (LAST_USED_FILE, *fallbacks):
        try:
            return (Path(folder) / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def remove_stale(
    root: str | Path,
    keep: str | Path,
    is_entry: Callable[[Path], bool],
    unused_for_s: float = UNUSED_FOR_S,
    fallbacks: tuple[str, ...] = (),
    stale_temp_s: float = STALE_TEMP_S,
) -> list[Path]:
    """Delete older versions of the entry ``keep`` that nobody has used for ``unused_for_s``, and leftovers.

    Call it while holding ``keep``'s :func:`entry_lock`.

    Parameters
    ----------
    root : path
        The cache folder.
    keep : path
        The entry being asked for; others of its :func:`family` are its older versions.
    is_entry : callable (path) -> bool
        True for a folder this cache wrote (anything else in ``root`` is left alone).
    unused_for_s : float
        How long an older version must have gone unused (:func:`last_used`) before it is deleted.
    fallbacks : tuple of str
        Files whose time stands for the last use of an entry without ``.last_used``.
    stale_temp_s : float
        A temporary folder of this family older than this belongs to a killed build (a build of another
        version may run while this lock is held, so only age tells).

    Returns
    -------
    list of Path
        What was deleted.
    """
    root, keep = Path(root), Path(keep)
    if not root.is_dir():
        return []
    stem, now, removed = family(keep.name), time.time(), []
    for path in root.iterdir():
        if not path.is_dir() or path == keep:
            continue
        if path.name.startswith(".") and ".tmp-" in path.name:
            owner = path.name[1:].split(".tmp-", 1)[0]
            stale = family(owner) == stem and now - path.stat().st_mtime > stale_temp_s
        else:
            stale = family(path.name) == stem and is_entry(path) and now - last_used(path, fallbacks) > unused_for_s
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
