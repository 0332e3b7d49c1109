"""The thread policy: as many threads as the cores other programs leave free, and an explicit setting wins."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dmf2mel import threads


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    """Each test starts from torch's count with no thread variables set, and leaves it as it found it."""
    for name in (threads.THREADS_ENV, *threads.TORCH_ENV):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_last_set", None)
    monkeypatch.setattr(threads, "_torch_at_import", before)
    monkeypatch.setattr(threads, "_configured_at", float("-inf"))
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("usable", "others", "expected"),
    [
        (2, 0.0, 2),
        (2, 0.3, 2),
        (2, 0.7, 1),
        (2, 1.3, 1),
        (2, 2.0, 1),
        (2, 5.0, 1),
        (8, 0.0, 8),
        (8, 2.6, 5),
        (1, 0.0, 1),
    ],
)
def test_threads_are_the_cores_the_others_leave_free(usable, others, expected):
    assert threads.threads_for(usable, others) == expected


def test_usable_cores_respects_the_affinity_set():
    assert 1 <= threads.usable_cores() <= len(__import__("os").sched_getaffinity(0))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-CPU accounting needs /proc/stat")
def test_others_load_sees_a_busy_process_but_not_our_own_work():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert threads.others_load(0.6) > 0.3
    finally:
        spinner.kill()
        spinner.wait()


def test_our_own_cpu_time_is_not_load():
    # over 2 s the usable CPUs were busy for 3 CPU-seconds, 2 of them ours: the others used half a core
    first, second = threads._Sample(10.0, 100.0, 5.0), threads._Sample(12.0, 103.0, 7.0)
    assert threads._others_between(first, second) == pytest.approx(0.5)
    # spinning threads of ours that fill both cores leave no load to the others
    assert threads._others_between(first, threads._Sample(12.0, 104.0, 9.0)) == 0.0


def test_an_environment_variable_fixes_the_count(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "1")
    assert threads.configure() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv(threads.THREADS_ENV, "auto")
    assert threads.explicit_threads() is None
    monkeypatch.setenv(threads.THREADS_ENV, "many")
    with pytest.raises(ValueError, match="DMF2MEL_NUM_THREADS='many'"):
        threads.configure()


def test_omp_num_threads_means_torch_count_is_the_users(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    monkeypatch.setattr(threads, "others_load", lambda interval=0: pytest.fail("an explicit setting needs no probe"))
    assert threads.configure() == 1


def test_torch_set_num_threads_after_import_wins(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "others_load", lambda interval=0: 0.0)
    assert threads.configure() == 2
    torch.set_num_threads(1)  # the user's own choice
    monkeypatch.setattr(threads, "_configured_at", float("-inf"))
    assert threads.explicit_threads() == 1
    assert threads.configure() == 1 and torch.get_num_threads() == 1


def fake_samples(monkeypatch, others_cores_per_interval):
    """Samples 1 s apart in which the other processes kept ``others`` cores busy and we kept one."""
    state = {"wall": 0.0, "busy": 0.0, "own": 0.0}
    loads = iter(others_cores_per_interval)

    def sample(cpus):
        sample = threads._Sample(state["wall"], state["busy"], state["own"])
        others = next(loads, 0.0)
        state["wall"] += 1.0
        state["busy"] += others + 1.0
        state["own"] += 1.0
        return sample

    monkeypatch.setattr(threads, "_sample", sample)
    monkeypatch.setattr(threads.time, "monotonic", lambda: state["wall"])


def test_the_governor_follows_the_load_while_training(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "_torch_at_import", 2)
    fake_samples(monkeypatch, [0.0, 2.0, 2.0, 0.0, 0.0])
    governor = threads.ThreadGovernor(recheck_s=1.0)
    counts = [governor.update() for _ in range(4)]
    assert counts == [2, 1, 1, 2]  # quiet, then two busy processes for two intervals, then quiet again
    assert governor.changes == 2


def test_the_governor_leaves_an_explicit_count_alone(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setenv(threads.THREADS_ENV, "2")
    torch.set_num_threads(2)
    fake_samples(monkeypatch, [2.0, 2.0, 2.0])
    governor = threads.ThreadGovernor(recheck_s=1.0)
    assert [governor.update() for _ in range(2)] == [2, 2]
    assert governor.changes == 0
