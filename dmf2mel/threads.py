"""How many CPU threads dmf2mel computes on: the cores nobody else is using, re-checked while it trains.

The problem. PyTorch's intra-op pool (OpenMP) and the selective scan's numba kernels both run parallel loops whose
threads wait for each other at the end of every loop. On a machine where other programs also want the cores (a
shared lab server, a JupyterHub during a class, a second build), one of our threads is regularly descheduled and
the others spin at the barrier, burning the time slice the late thread needs. Measured on a 2-core machine beside
two busy processes (``benchmarks/busy.py``, results in ``benchmarks/results/busy.md``): with PyTorch's default of
one thread per core, four quick-profile epochs were not done in 300 s where they take 18 s quietly (more than
16x); with this policy one epoch took 2x its quiet time, about what a fair share of the cores costs.

The policy (one place, used by the trainer, the evaluation, the command line, the chapters through
:func:`dmf2mel.viz.setup_notebook` and the benchmarks):

- **Usable cores**: the CPUs this process may run on (``os.sched_getaffinity``), capped by a cgroup CPU quota
  (containers).
- **Others' load**: the CPU time the *other* processes used on those cores over the last interval, in cores:
  busy time of those CPUs (``/proc/stat``) minus this process's own CPU time (``getrusage``), divided by the
  interval. Our own threads -- spinning or not -- never count as load.
- **Threads** = usable cores minus others' load (rounded), at least 1. torch gets that many intra-op threads;
  numba's kernels run on as many as torch (:mod:`dmf2mel.models.scan.cpu`), and the two pools run one after the
  other, so together they never ask for more threads than there are free cores.
- **Re-checked while training**: :class:`ThreadGovernor` re-measures every few seconds between batches, so a job
  that starts or stops beside a long run changes its thread count within seconds, not at the next epoch.
- **An explicit setting wins**: ``DMF2MEL_NUM_THREADS`` (a number, or ``auto``), else ``OMP_NUM_THREADS`` or
  ``MKL_NUM_THREADS`` in the environment, else a ``torch.set_num_threads(n)`` call after dmf2mel was imported:
  each fixes the count and the policy stops adapting. ``NUMBA_NUM_THREADS`` caps numba's kernels as usual.

Where ``/proc/stat`` is missing (macOS, Windows) the load is the 1-minute load average minus our own threads.
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass

import torch

from dmf2mel.memory import return_freed_memory

#: Environment variable that fixes the thread count (``auto``, or unset: the adaptive policy).
THREADS_ENV = "DMF2MEL_NUM_THREADS"
#: Environment variables PyTorch itself reads; when one is set, torch's count is the user's choice.
TORCH_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Seconds between two measurements of the load while training.
RECHECK_S = 2.0
#: Seconds :func:`configure` watches the machine before choosing (the process is idle meanwhile).
PROBE_S = 0.25

# The count dmf2mel last gave torch: torch.get_num_threads() differing from it means the user changed it.
_last_set: int | None = None
# When configure() last measured the machine: a second call within RECHECK_S keeps that choice.
_configured_at = -math.inf
_torch_at_import = torch.get_num_threads()


def usable_cores() -> int:
    """CPUs this process may use: its affinity set, capped by a cgroup v2/v1 CPU quota where one is set."""
    cpus = _allowed_cpus()
    cores = len(cpus) if cpus is not None else os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota + 0.5)))
    return max(1, cores)


def _cgroup_quota() -> float | None:
    """The cgroup's CPU quota in cores, or None when there is none (or it cannot be read)."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as handle:
            quota, period = handle.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as handle:
            quota_us = int(handle.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as handle:
            period_us = int(handle.read())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def _allowed_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class _Sample:
    wall: float
    busy_s: float | None  # busy CPU seconds of the usable CPUs since boot (None: no /proc/stat)
    own_s: float  # this process's CPU seconds


def _busy_seconds(cpus: set[int] | None) -> float | None:
    """Busy (non-idle, non-iowait) seconds of the given CPUs since boot, from ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            lines = handle.readlines()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    busy = 0
    found = False
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        busy += values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
        found = True
    return busy / ticks if found else None


def _own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sample(cpus: set[int] | None) -> _Sample:
    return _Sample(time.monotonic(), _busy_seconds(cpus), _own_seconds())


def _others_between(first: _Sample, second: _Sample) -> float:
    """Cores the other processes kept busy between two samples."""
    wall = second.wall - first.wall
    if wall <= 0:
        return 0.0
    if first.busy_s is None or second.busy_s is None:
        # No per-CPU accounting: the load average, less the threads we ran ourselves.
        own_cores = (second.own_s - first.own_s) / wall
        return max(0.0, os.getloadavg()[0] - own_cores)
    busy = second.busy_s - first.busy_s
    own = second.own_s - first.own_s
    return max(0.0, (busy - own) / wall)


def others_load(interval: float = PROBE_S) -> float:
    """Cores used by other processes over the next ``interval`` seconds (this process sleeps meanwhile)."""
    cpus = _allowed_cpus()
    first = _sample(cpus)
    time.sleep(interval)
    return _others_between(first, _sample(cpus))


def threads_for(usable: int, others: float) -> int:
    """The policy: the cores the others leave free (a core counts as taken from half a core of load), at least 1."""
    return max(1, min(usable, usable - math.floor(others + 0.5)))


def explicit_threads() -> int | None:
    """A thread count the user fixed, or None when the policy decides.

    ``DMF2MEL_NUM_THREADS`` first (``auto`` means: the policy), then ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (torch
    already runs that many), then a ``torch.set_num_threads`` call made since dmf2mel last set the count.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if value and value.lower() != "auto":
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"{THREADS_ENV}={value!r}: expected a positive integer or 'auto'")
        return count
    if not value and any(os.environ.get(name, "").strip() for name in TORCH_ENV):
        return torch.get_num_threads()
    expected = _torch_at_import if _last_set is None else _last_set
    if torch.get_num_threads() != expected:
        return torch.get_num_threads()
    return None


def _set(count: int) -> int:
    global _last_set
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    _last_set = count
    return count


def configure(verbose: bool = False) -> int:
    """Choose the thread count now (watching the machine for a quarter of a second) and give it to torch.

    Being where every entry point sets up a process to compute, it also sets glibc's mmap threshold
    (:func:`dmf2mel.memory.return_freed_memory`: big freed tensors go back to the system).

    Returns
    -------
    int
        The threads torch (and the numba kernels) now use.
    """
    global _configured_at
    return_freed_memory()
    fixed = explicit_threads()
    if fixed is not None:
        count = fixed if torch.get_num_threads() == fixed else _set(fixed)
        reason = "explicit setting"
    elif time.monotonic() - _configured_at < RECHECK_S:
        count, reason = torch.get_num_threads(), "measured a moment ago"
    else:
        usable, others = usable_cores(), others_load()
        count = _set(threads_for(usable, others))
        _configured_at = time.monotonic()
        reason = f"{usable} usable cores, {others:.1f} busy with other work"
    if verbose:
        print(f"dmf2mel computes on {count} thread(s) ({reason})")
    return count


class ThreadGovernor:
    """Re-applies the policy every :data:`RECHECK_S` seconds while a long job runs; call :meth:`update` often.

    ``update()`` costs a few microseconds when nothing is due; when a check is due it reads ``/proc/stat``
    and sets torch's thread count if the choice changed. With an explicit setting it does nothing.
    """

    def __init__(self, recheck_s: float = RECHECK_S) -> None:
        self.recheck_s = recheck_s
        self.cpus = _allowed_cpus()
        self.usable = usable_cores()
        self.last = _sample(self.cpus)
        self.changes = 0

    def update(self) -> int:
        now = time.monotonic()
        if now - self.last.wall < self.recheck_s:
            return torch.get_num_threads()
        sample = _sample(self.cpus)
        others = _others_between(self.last, sample)
        self.last = sample
        if explicit_threads() is not None:
            return torch.get_num_threads()
        count = threads_for(self.usable, others)
        if count != torch.get_num_threads():
            self.changes += 1
            _set(count)
        return count
