"""The cache rules shared by corpora and runs: built aside and renamed, built once, stale entries removed when unused."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dmf2mel import cache

REPO = Path(__file__).resolve().parents[1]


def get(root: Path, name: str, build, doing: str = "building the entry", verbose: bool = False) -> Path:
    """The pattern both caches follow: lock, reuse a complete entry, else build it aside."""
    folder = root / name
    with cache.entry_lock(root, name, doing, verbose):
        if not (folder / "done").is_file():
            cache.build_entry(folder, build)
        cache.mark_used(folder)
    return folder


def slow_build(calls: list):
    def build(path: Path) -> None:
        calls.append(path)
        path.mkdir()
        time.sleep(0.3)  # long enough for the other thread to arrive while this one builds
        (path / "done").write_text("yes")

    return build


def test_two_threads_asking_for_the_same_entry_build_it_once(tmp_path):
    calls, folders = [], []
    threads = [
        threading.Thread(target=lambda: folders.append(get(tmp_path, "x-0", slow_build(calls)))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and folders == [tmp_path / "x-0"] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-0"]  # no temporary folder, no lock file left


def test_two_processes_asking_for_the_same_entry_build_it_once(tmp_path):
    script = (
        "import sys, time; from pathlib import Path; from dmf2mel import cache\n"
        "root = Path(sys.argv[1]); folder = root / 'x-0'\n"
        "def build(path):\n"
        "    path.mkdir(); time.sleep(0.5); (path / 'done').write_text('yes')\n"
        "    with open(root / 'builds.txt', 'a') as log: log.write('built\\n')\n"
        "with cache.entry_lock(root, 'x-0', 'building x'):\n"
        "    if not (folder / 'done').is_file(): cache.build_entry(folder, build)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert (tmp_path / "builds.txt").read_text() == "built\n"
    assert (tmp_path / "x-0" / "done").read_text() == "yes"
    waited = [out for out in outputs if out.startswith("waiting for process ")]
    assert len(waited) <= 1 and all("which is building x" in out for out in waited)


def test_a_failed_build_leaves_nothing_half_written(tmp_path):
    def broken(path: Path) -> None:
        path.mkdir()
        (path / "half").write_text("half an entry")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        get(tmp_path, "x-0", broken)
    assert list(tmp_path.iterdir()) == []
    # an older copy in place stays as it was when its rebuild fails
    (tmp_path / "x-0").mkdir()
    (tmp_path / "x-0" / "old").write_text("old")
    with pytest.raises(RuntimeError):
        cache.build_entry(tmp_path / "x-0", broken)
    assert [p.name for p in tmp_path.iterdir()] == ["x-0"] and (tmp_path / "x-0" / "old").is_file()
    # and a successful rebuild replaces it whole
    cache.build_entry(tmp_path / "x-0", lambda path: path.mkdir() or (path / "new").write_text("new"))
    assert sorted(p.name for p in (tmp_path / "x-0").iterdir()) == ["new"]


def test_a_waiting_process_says_whom_it_waits_for(tmp_path, capsys):
    lock = cache.lock_path(tmp_path, "x-0")
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("process 4242 (since 10:00:00)")
        handle.flush()
        waiter = threading.Thread(target=lambda: get(tmp_path, "x-0", slow_build([]), "building x", verbose=True))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive(), "the lock holder must be waited for"
        fcntl.flock(handle, fcntl.LOCK_UN)
    waiter.join(timeout=30)
    assert capsys.readouterr().out == "waiting for process 4242 (since 10:00:00), which is building x\n"
    assert (tmp_path / "x-0" / "done").is_file() and not lock.exists()


def test_a_lock_file_left_by_a_killed_process_does_not_block(tmp_path):
    cache.lock_path(tmp_path, "x-0").write_text("process 1 (since 09:00:00)")  # no flock held on it
    assert get(tmp_path, "x-0", slow_build([])) == tmp_path / "x-0"


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_stale_entries_are_removed_only_when_unused(tmp_path):
    keep = tmp_path / "x-new"
    unused = tmp_path / "x-old1"  # an older version nobody asked for in two days
    in_use = tmp_path / "x-old2"  # an older version handed out an hour ago
    legacy = tmp_path / "x-old3"  # written before .last_used existed: no record of use
    other = tmp_path / "y-old"  # another family
    foreign = tmp_path / "x-notours"  # not an entry of this cache
    for folder in (unused, in_use, legacy, other, foreign):
        folder.mkdir()
    for folder, seconds in ((unused, 2 * 86400), (in_use, 3600), (other, 2 * 86400)):
        cache.mark_used(folder)
        age(folder / cache.LAST_USED_FILE, seconds)
    killed = tmp_path / ".x-new.tmp-abc"  # a temporary folder of a build killed long ago
    running = tmp_path / ".x-old2.tmp-def"  # a build in progress
    killed.mkdir()
    running.mkdir()
    age(killed, cache.STALE_TEMP_S + 60)

    removed = cache.remove_stale(tmp_path, keep, lambda path: path.name != "x-notours")
    assert sorted(p.name for p in removed) == sorted([unused.name, legacy.name, killed.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([in_use.name, other.name, foreign.name, running.name])
    assert cache.last_used(in_use) == pytest.approx(time.time() - 3600, abs=60)
    assert cache.last_used(legacy) == 0.0
