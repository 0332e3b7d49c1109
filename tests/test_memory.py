"""glibc's mmap threshold (dmf2mel.memory): the environment switch, and freed big tensors leaving the process."""

import subprocess
import sys
import textwrap

import pytest

from dmf2mel import memory

ON_GLIBC = memory._glibc() is not None


def test_environment_switch(monkeypatch):
    monkeypatch.setenv(memory.ENV_VAR, "off")
    assert memory.return_freed_memory() is None
    monkeypatch.setenv(memory.ENV_VAR, "0")
    assert memory._threshold_from_environment() is None
    monkeypatch.setenv(memory.ENV_VAR, str(8 * 2**20))
    assert memory._threshold_from_environment() == 8 * 2**20
    monkeypatch.delenv(memory.ENV_VAR)
    assert memory._threshold_from_environment() == memory.MMAP_THRESHOLD
    monkeypatch.setenv(memory.ENV_VAR, "4MB")
    with pytest.raises(ValueError, match=memory.ENV_VAR):
        memory.return_freed_memory()


# In a fresh process: free one 16 MiB tensor (glibc then raises its threshold to 16 MiB), make eight 6 MiB tensors
# and a small one after them (it pins the heap's top), free the eight: how much resident memory went back?
RELEASED = textwrap.dedent(
    """
    import sys, torch
    from dmf2mel import memory
    if sys.argv[1] == "set":
        assert memory.return_freed_memory() == memory.MMAP_THRESHOLD
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    first = torch.ones(4 * 2**20)
    del first
    big = [torch.ones(3 * 2**19) for _ in range(8)]
    pin = torch.ones(1000)
    before = rss_mb()
    del big
    print(before - rss_mb())
    """
)


@pytest.mark.skipif(not ON_GLIBC, reason="the mmap threshold is glibc's; other C libraries are left alone")
def test_freed_big_tensors_leave_the_process():
    def released(mode: str) -> float:
        run = subprocess.run([sys.executable, "-c", RELEASED, mode], capture_output=True, text=True, check=True)
        return float(run.stdout)

    assert released("set") > 40  # 48 MiB back to the system
    assert released("default") < 8  # glibc's own threshold kept them in the heap
