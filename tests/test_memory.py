"""glibc's mmap threshold (dmf2mel.memory): the environment switch, and freed big tensors leaving the process."""

import json
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


# In a fresh process: free one 16 MiB tensor (glibc then raises its own threshold to 16 MiB), make eight 6 MiB
# tensors, free them. Printed: the bytes glibc mapped for them (mallinfo2's hblkhd) and the resident memory freeing
# them gave back, in MiB.
PROBE = textwrap.dedent(
    """
    import ctypes, json, sys, torch
    from dmf2mel import memory
    if sys.argv[1] == "set":
        assert memory.return_freed_memory() == memory.MMAP_THRESHOLD

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    first = torch.ones(4 * 2**20)
    del first
    mapped = libc.mallinfo2().hblkhd
    big = [torch.ones(3 * 2**19) for _ in range(8)]
    mapped = (libc.mallinfo2().hblkhd - mapped) / 2**20
    before = rss_mb()
    del big
    print(json.dumps({"mapped": mapped, "released": before - rss_mb()}))
    """
)


@pytest.mark.skipif(not ON_GLIBC, reason="the mmap threshold is glibc's; other C libraries are left alone")
def test_big_tensors_get_their_own_mappings_and_leave_when_freed():
    def probe(mode: str) -> dict:
        run = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return json.loads(run.stdout)

    with_setting, default = probe("set"), probe("default")
    assert with_setting["mapped"] >= 48 and with_setting["released"] > 40  # 48 MiB mapped, then given back
    assert default["mapped"] == 0  # glibc's own, raised threshold put them in the heap


def test_every_entry_point_sets_it_through_the_thread_configuration(monkeypatch):
    from dmf2mel import threads

    calls = []
    monkeypatch.setattr(threads, "return_freed_memory", lambda: calls.append(True))
    threads.configure()
    assert calls == [True]


def test_scratch_hands_out_the_same_memory_grown_to_the_largest_request():
    import torch

    first = memory.scratch(3, 4, torch.float32)
    assert first.shape == (3, 4) and first.dtype == torch.float32 and first.is_contiguous()
    again = memory.scratch(4, 3, torch.float32)
    assert again.data_ptr() == first.data_ptr()  # reused, not a fresh allocation
    bigger = memory.scratch(50, 40, torch.float32)
    assert bigger.shape == (50, 40)
    assert memory.scratch(2, 2, torch.float32).data_ptr() == bigger.data_ptr()  # the grown buffer stays
    other = memory.scratch(2, 2, torch.float64)
    assert other.dtype == torch.float64 and other.data_ptr() != bigger.data_ptr()
