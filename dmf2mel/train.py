"""The trainer: DMF2Mel and the baselines, with model selection on val, checkpoints, resume and DDP.

Protocol (``book/architecture.md``, "From split_data to scores"): train on the *train* parts of every training subject,
validate on their *val* parts (Pearson r, the paper metric without its null) to keep the best epoch
and to stop early, and touch the *test* parts only once, at the end, through
:func:`dmf2mel.evaluate.evaluate_run`. Held-out subjects (the unknown-subject protocol) are never
seen in training.

Two profiles:

* ``quick`` - ``DMF2MelConfig.small()`` and a short schedule: what the book runs on two CPU cores.
* ``paper`` - the official hyper-parameters: batches of 16 windows of 640 samples (10 s), one random
  window per recording per epoch, Adam (lr 5e-4, betas 0.9/0.98, eps 1e-9), StepLR(50, 0.9), 2000
  epochs, loss -r + 0.5 L1 + 0.1 InfoNCE.

Both profiles warm the learning rate up linearly over their first ``warmup_steps`` optimiser steps and clip the
gradient's norm to ``clip_grad_norm`` (the official recipe does neither; with its loss, whose terms are bounded or
nearly so, the norm stays well below the bound in a healthy run and only a spike is cut). ``history.csv`` records
each epoch's mean and largest gradient norm (before clipping) and how many steps were clipped.

The run guards itself. A step whose loss or gradient is not finite never updates the weights (it is counted in
``skipped_steps``). An epoch *diverges* when more than half of its steps were skipped or when its model predicts a
non-finite value on validation; the trainer then restores the best state so far (the start of the run when there is
none yet), halves the learning rate and goes on, at most :data:`MAX_RECOVERIES` times; after that it stops. Either
way one sentence says so on the console and in the ``event`` column of ``history.csv``. ``best.pt`` only ever holds a
state whose validation predictions were all finite.

Every epoch ends with an atomic ``last.pt`` (model, optimiser, scheduler, the RNG states of every
process, epoch, step, config, history, the thread counts the run computed on); an improvement on val also writes
``best.pt``. ``resume=True`` continues from ``last.pt``; the windows of an epoch depend only on ``(seed, epoch)``.
On CPU a resumed run ends bit-identical to an uninterrupted one **when both ran on one fixed thread count**
(``DMF2MEL_NUM_THREADS=N``, or ``OMP_NUM_THREADS``; :mod:`dmf2mel.threads`): a parallel sum's rounding depends on how
many threads split it, and without a fixed count the count follows the machine's load and changes mid-run. A resume
that cannot keep the promise says so (:class:`ResumeWarning`) and ends equal to an uninterrupted run up to rounding.

Multi-GPU / multi-node: launch with ``torchrun --nproc_per_node N -m dmf2mel train ...``. Each
process trains on its share of every epoch's windows (``batch_size`` is per process), gradients are
averaged by :class:`~torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on GPU), and
only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dmf2mel.checkpoint import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    check_checkpoint_config,
    check_same_data,
    HISTORY_FILE,
    LAST_CHECKPOINT,
    LOCK_FILE,
    load_checkpoint,
    model_from_config,
    read_config,
    rng_state,
    run_lock,
    save_checkpoint,
    set_rng_state,
    write_config,
    write_history,
)
from dmf2mel.data.datasets import RandomWindows, SubjectIndex
from dmf2mel.data.sparrkulee import N_CHANS, N_MELS, SFREQ, SplitData
from dmf2mel.errors import TrainingFailed, UserError
from dmf2mel.models.registry import model_spec
from dmf2mel.validation import (
    check_device,
    check_folder,
    check_int,
    check_option,
    check_positive_number,
    check_writable,
)
from dmf2mel.threads import THREADS_ENV, ThreadGovernor, explicit_threads
from dmf2mel.threads import configure as configure_threads
from dmf2mel.evaluate import (
    default_held_out,
    evaluate_run,
    open_data_for,
    predict_recordings,
)
from dmf2mel.losses import INFONCE_WEIGHT, L1_WEIGHT, PEARSON_WEIGHT, PaperLoss
from dmf2mel.metrics import N_NULL, paper_metric

#: Layout version of config.json.
CONFIG_VERSION = 1
#: Recoveries from a diverged epoch (restore the best state, halve the learning rate) before a run stops.
MAX_RECOVERIES = 3
#: The learning rate is multiplied by this at each recovery.
RECOVERY_LR_FACTOR = 0.5


class ResumeWarning(UserWarning):
    """A resumed run will not end bit-identical to an uninterrupted one (the message says why)."""


#: Profile fields added after runs were first written, with the values that train as those runs did.
_GUARD_FIELDS = {
    "warmup_steps": 0,
    "clip_grad_norm": None,
    "loss_weights": [PEARSON_WEIGHT, L1_WEIGHT, INFONCE_WEIGHT],
}


@dataclass(frozen=True)
class TrainProfile:
    """Hyper-parameters of a training run.

    Attributes
    ----------
    name : str
    model_preset : str
        ``"small"`` or ``"paper"``: which model config preset to use.
    batch_size : int
        Windows per optimiser step and process.
    window_seconds : float
        Training (and prediction) window length.
    windows_per_recording : int
        Random windows drawn from each training recording per epoch (paper: 1).
    epochs : int
    lr, betas, eps : Adam's learning rate, betas and epsilon.
    step_size, gamma : StepLR: multiply the learning rate by ``gamma`` every ``step_size`` epochs.
    val_every : int
        Validate every this many epochs (and after the last).
    patience : int or None
        Stop after this many validations without improvement (None: never).
    unknown_fraction : float
        Share of training windows whose subject id is hidden (-1), which trains the
        "unknown subject" conditioning.
    warmup_steps : int
        The learning rate rises linearly from ``lr / warmup_steps`` to ``lr`` over the first ``warmup_steps``
        optimiser steps (0: no warm-up).
    clip_grad_norm : float or None
        Largest gradient norm (over all parameters) of a step; a larger one is scaled down to it (None: no clipping).
    loss_weights : (float, float, float)
        Weights of -Pearson r, L1 and InfoNCE in the loss (:class:`~dmf2mel.losses.PaperLoss`; official: 1, 0.5,
        0.1).
    """

    name: str
    model_preset: str
    batch_size: int
    window_seconds: float
    windows_per_recording: int
    epochs: int
    lr: float
    betas: tuple[float, float]
    eps: float
    step_size: int
    gamma: float
    val_every: int
    patience: int | None
    unknown_fraction: float
    warmup_steps: int = 0
    clip_grad_norm: float | None = None
    loss_weights: tuple[float, float, float] = (PEARSON_WEIGHT, L1_WEIGHT, INFONCE_WEIGHT)

    @property
    def window(self) -> int:
        """Window length in samples at 64 Hz."""
        return int(round(self.window_seconds * SFREQ))


PROFILES: dict[str, TrainProfile] = {
    "quick": TrainProfile(
        name="quick",
        model_preset="small",
        batch_size=8,
        # 5 s windows: the small model's attention over time costs O(window^2). An epoch of the default
        # teaching corpus (18 training recordings x 8 windows = 18 steps) takes ~12 s on one thread of the
        # quiet 2-core machine, validation included. The budget is set by steps, not epochs: measured on the
        # teaching corpus (seed 0, one thread), 2 windows per recording at lr 1e-3 reached known r 0.150 in
        # 20 epochs; 8 windows at lr 1e-3 0.236; 8 windows at lr 3e-3 0.272 in 10 epochs (seed 1: 0.274)
        # and 0.301 in 20; a step decay (x0.7 every 2 epochs) lowered it to 0.254.
        window_seconds=5.0,
        windows_per_recording=8,
        epochs=10,
        lr=3e-3,
        betas=(0.9, 0.98),
        eps=1e-9,
        step_size=50,
        gamma=0.9,
        val_every=1,
        patience=4,
        unknown_fraction=0.0,  # DMF2Mel hides subjects itself (config.subject_dropout)
        # about one epoch of the teaching corpus (18 steps); gradient norms of DMF2Mel's steps were 0.3-0.5 in its
        # second epoch (seed 0), so the bound cuts spikes only
        warmup_steps=20,
        clip_grad_norm=1.0,
    ),
    "paper": TrainProfile(
        name="paper",
        model_preset="paper",
        batch_size=16,
        window_seconds=10.0,
        windows_per_recording=1,
        epochs=2000,
        lr=5e-4,
        betas=(0.9, 0.98),
        eps=1e-9,
        step_size=50,
        gamma=0.9,
        val_every=1,
        patience=200,
        unknown_fraction=0.0,  # DMF2Mel hides subjects itself (config.subject_dropout)
        # not in the official recipe: a guard against an early spike that costs nothing once the run is healthy
        warmup_steps=200,
        clip_grad_norm=1.0,
    ),
}


# --- processes and devices ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Process:
    """This process's place in a (possibly distributed) run."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def _start_process(device: str | None) -> _Process:
    """Join the torchrun process group if there is one; pick the device."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r}: no CUDA GPU is available here (use 'cpu')", parameter="device")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Process(0, 1, torch.device(device))
    cuda = device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return _Process(dist.get_rank(), world, torch.device("cuda", local_rank))
    return _Process(dist.get_rank(), world, torch.device("cpu"))


def _gather(proc: _Process, obj: Any) -> list:
    """``obj`` from every process, in rank order."""
    if proc.world == 1:
        return [obj]
    out: list = [None] * proc.world
    dist.all_gather_object(out, obj)
    return out


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- run config ---------------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    """The JSON round trip of ``obj`` (tuples become lists), so configs compare as written."""
    return json.loads(json.dumps(obj))


def make_config(
    data: SplitData,
    model: str,
    profile: TrainProfile,
    seed: int,
    held_out: Sequence[str] | None,
) -> dict:
    """The config of a new run: model and its config, profile, seed, data subjects, window and the fingerprint of the
    training subjects' recordings (:meth:`~dmf2mel.data.sparrkulee.SplitData.fingerprint`)."""
    held = default_held_out(data) if held_out is None else sorted(held_out)
    missing = sorted(set(held) - set(data.subjects))
    if missing:
        raise UserError(
            f"held_out: {', '.join(missing)} not in {data.folder} (subjects: {', '.join(data.subjects)})",
            parameter="held_out",
        )
    subjects = [s for s in data.subjects if s not in held]
    if not subjects:
        raise UserError(f"held_out leaves no training subjects in {data.folder}", parameter="held_out")
    spec = model_spec(model)
    return _plain(
        {
            "version": CONFIG_VERSION,
            "model": model,
            "model_config": spec.default_config(profile.model_preset, len(subjects), data.n_chans, data.n_mels),
            "profile": profile.name,
            "train": dataclasses.asdict(profile),
            "seed": seed,
            "data": {
                "folder": str(data.folder.resolve()),
                "n_chans": data.n_chans,
                "n_mels": data.n_mels,
                "subjects": subjects,
                "held_out": held,
                "window": profile.window,
                # ties the run to the recordings it learns from (evaluate and resume check it)
                "fingerprint": data.fingerprint(subjects),
            },
        }
    )


#: Config entries that may change on resume: the data may have moved; more epochs may be wanted (and the patience
#: of early stopping with them).
_RESUMABLE_CHANGES = {("data", "folder"), ("train", "epochs"), ("train", "patience")}


def _differences(stored: dict, requested: dict, prefix: tuple = ()) -> list[str]:
    out = []
    for key in sorted(set(stored) | set(requested)):
        path = prefix + (key,)
        a, b = stored.get(key), requested.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, path))
        elif a != b and path not in _RESUMABLE_CHANGES:
            out.append(f"{'.'.join(path)}: the run has {json.dumps(a)}, this command asks for {json.dumps(b)}")
    return out


def _check_run_folder(run: Path, resume: bool) -> bool:
    """Refuse to clobber an existing run, or to resume one that is not there; call it holding :func:`run_lock`.

    Returns True when ``run`` holds a run cut short before its first checkpoint (only ``config.json``, perhaps
    ``history.csv``): nothing of it can be resumed or lost, so it is started again (its files are removed).
    """
    check_folder("run", run)
    contents = {path.name for path in run.iterdir()} - {LOCK_FILE} if run.is_dir() else set()
    cut_short = bool(contents) and contents <= {CONFIG_FILE, HISTORY_FILE}
    if resume:
        if cut_short:
            raise UserError(
                f"resume: {run} stopped before its first epoch ended ({CONFIG_FILE} but no {LAST_CHECKPOINT}), so "
                "there is nothing to resume; the same command without resume=True starts it again",
                parameter="resume",
            )
        if LAST_CHECKPOINT not in contents or CONFIG_FILE not in contents:
            raise UserError(
                f"resume: {run} holds no run to resume (no {CONFIG_FILE} and {LAST_CHECKPOINT})", parameter="resume"
            )
        return False
    if cut_short:
        return True
    if contents:
        raise UserError(
            f"run: {run} exists and is not empty; resume=True continues that run, "
            "or choose a new folder (nothing was changed)",
            parameter="run",
        )
    return False


# --- training -----------------------------------------------------------------------------------


def _epoch_batches(n_items: int, batch_size: int, seed: int, epoch: int, proc: _Process) -> list[list[int]]:
    """This process's batches of item indices for ``epoch``: one shuffled order shared by all processes,
    padded to a multiple of the process count (as DistributedSampler does), then dealt out by rank.

    A last incomplete batch is dropped, as the official loader does (``drop_last=True``), unless it is the only
    batch (a corpus smaller than one batch still trains). Every process has as many items, so all drop alike.
    """
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    order = torch.randperm(n_items, generator=generator).tolist()
    order += order[: (-len(order)) % proc.world]
    mine = order[proc.rank :: proc.world]
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def validate(
    model: nn.Module,
    data: SplitData,
    recordings: Sequence,
    index: SubjectIndex,
    window: int,
    proc: _Process,
) -> tuple[float, int]:
    """Paper-metric Pearson r (no null) on the val parts and the number of windows whose prediction was not finite
    (scored as failures, r = 0); every process gets the same numbers."""
    was_training = model.training
    model.eval()
    mine = list(recordings)[proc.rank :: proc.world]
    predictions = predict_recordings(model, data, "val", mine, index, window, proc.device)
    model.train(was_training)
    every = [p for part in _gather(proc, predictions) for p in part]
    score = paper_metric(every, n_null=0, non_finite="fail")
    r = float("nan") if score["r"] is None else score["r"]
    return r, score["n_failed_windows"]


def _history_row(
    epoch: int,
    lr: float,
    terms: dict[str, float],
    val_r: float | None,
    best: float,
    seconds: float,
    step: int = 0,
    event: str = "",
) -> dict:
    return {
        "epoch": epoch,
        "step": step,
        "lr": lr,
        "loss": terms.get("loss"),
        "train_r": terms.get("r"),
        "train_l1": terms.get("l1"),
        "train_infonce": terms.get("infonce"),
        "grad_norm": terms.get("grad_norm"),
        "grad_norm_max": terms.get("grad_norm_max"),
        "clipped_steps": terms.get("clipped_steps"),
        "skipped_steps": terms.get("skipped_steps"),
        "val_r": val_r,
        "best_val_r": best if math.isfinite(best) else None,
        "seconds": round(seconds, 3),
        "event": event,
    }


class _Trainer:
    """One training run (state shared by the epoch loop and the checkpoint writer)."""

    def __init__(self, config: dict, data: SplitData, run: Path, proc: _Process, quiet: bool, workers: int) -> None:
        self.config, self.data, self.run, self.proc, self.quiet = config, data, run, proc, quiet
        self.profile = config["train"]
        self.seed = config["seed"]
        self.index = SubjectIndex(config["data"]["subjects"])
        self.window = config["data"]["window"]
        self.workers = workers
        self.train_recs = data.recordings_in("train", subjects=self.index.subjects)
        self.val_recs = data.recordings_in("val", subjects=self.index.subjects)
        if not self.train_recs or not self.val_recs:
            raise UserError(f"{data.folder}: the training subjects need both train and val parts")
        _seed(self.seed)
        self.model = model_from_config(config, proc.device)
        self.history: list[dict] = []
        self.epoch = 0
        self.step = 0  # optimiser updates made
        self.best_val_r = -math.inf
        self.best_epoch = 0
        self.bad_validations = 0
        self.stopped_early = False
        self.recoveries = 0
        self.diverged = False  # stopped by divergence
        self.has_best = False  # best.pt holds a state validated with finite predictions
        # in memory, for a recovery: the best state so far, or the state the run (or this resumed part) started from
        self._best_state: dict | None = None
        self._start_state: dict | None = None
        # the torch thread counts the run's steps ran on, and whether every part of the run fixed the count
        self.thread_counts: set[int] = set()
        self.threads_fixed = explicit_threads() is not None

    # checkpoints -------------------------------------------------------------------------------

    def _state(self, optimizer=None, scheduler=None) -> dict:
        rngs = _gather(self.proc, rng_state())
        return {
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else {},
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "rng": rngs,
            "config": self.config,
            "history": self.history,
            "best_val_r": self.best_val_r,
            "best_epoch": self.best_epoch,
            "bad_validations": self.bad_validations,
            "stopped_early": self.stopped_early,
            "recoveries": self.recoveries,
            "diverged": self.diverged,
            "threads": {"counts": sorted(self.thread_counts), "fixed": self.threads_fixed},
        }

    def _save(self, best: bool, optimizer=None, scheduler=None) -> None:
        state = self._state(optimizer, scheduler)  # every process joins the RNG gather
        if best:
            self.has_best = True
            self._best_state = _copy_state(self.epoch, self.model, optimizer)
        if not self.proc.main:
            return
        write_history(self.run, self.history)
        if best:
            save_checkpoint(self.run / BEST_CHECKPOINT, state)
        save_checkpoint(self.run / LAST_CHECKPOINT, state)

    def restore(self, state: dict, optimizer=None, scheduler=None) -> None:
        self.model.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self.step = state.get("step", 0)
        self.history = list(state["history"])
        self.best_val_r = state["best_val_r"]
        self.best_epoch = state["best_epoch"]
        self.bad_validations = state["bad_validations"]
        self.stopped_early = state["stopped_early"]
        self.recoveries = state.get("recoveries", 0)
        self.diverged = state.get("diverged", False)
        best_file = self.run / BEST_CHECKPOINT
        self.has_best = best_file.is_file()
        if self.has_best and optimizer is not None:
            best = load_checkpoint(best_file)
            self._best_state = {"epoch": best["epoch"], "model": best["model"], "optimizer": best["optimizer"]}
        rngs = state["rng"]
        set_rng_state(rngs[self.proc.rank] if len(rngs) == self.proc.world else rngs[0])

    def _check_resume_threads(self, threads: dict | None) -> None:
        """Warn when the resumed run cannot end bit-identical to an uninterrupted one: its thread count was not one
        fixed number, or is another one now."""
        now = torch.get_num_threads()
        fixed_now = explicit_threads() is not None
        if threads is None:
            self.threads_fixed = False
            why = "its checkpoint does not record the thread counts it ran on"
        else:
            self.thread_counts = set(threads["counts"])
            self.threads_fixed = threads["fixed"] and fixed_now
            counts = " and ".join(map(str, threads["counts"])) or "no"
            if not threads["fixed"]:
                why = f"its epochs so far ran on {counts} thread(s) chosen by the machine's load"
            elif not fixed_now:
                why = f"it ran on {counts} fixed thread(s) and now the machine's load chooses the count"
            elif self.thread_counts and self.thread_counts != {now}:
                why = f"it ran on {counts} thread(s) and now runs on {now}"
            else:
                return
        if self.proc.device.type == "cpu" and self.proc.main:
            warnings.warn(
                f"resume: {self.run} will end equal to an uninterrupted run up to rounding, not bit for bit: {why} "
                f"(set {THREADS_ENV}=N for every part of a run to get the same bits)",
                ResumeWarning,
                stacklevel=2,
            )

    def _log(self, text: str) -> None:
        if self.quiet and self.proc.main:
            print(text, flush=True)

    def _say(self, text: str) -> None:
        """One line on the console whether progress bars are shown or not."""
        if self.proc.main:
            if self.quiet:
                print(text, flush=True)
            else:
                tqdm.write(text)

    # validation and model selection ------------------------------------------------------------

    def _validate(self) -> tuple[float, int]:
        return validate(self.model, self.data, self.val_recs, self.index, self.window, self.proc)

    def _select(self, val_r: float, failed: int) -> bool:
        """Whether a validated state is the new best; counts validations without improvement."""
        improved = failed == 0 and math.isfinite(val_r) and val_r > self.best_val_r
        if improved:
            self.best_val_r, self.best_epoch, self.bad_validations = val_r, self.epoch, 0
        else:
            self.bad_validations += 1
        return improved

    # closed-form fit ---------------------------------------------------------------------------

    def fit_closed_form(self, state: dict | None) -> None:
        if state is not None:
            self.restore(state)
            return
        start = time.perf_counter()
        pairs = {
            split: [self.data.pair(split, r.subject, r.stimulus) for r in recs]
            for split, recs in (("train", self.train_recs), ("val", self.val_recs))
        }
        self.model.fit(pairs["train"], pairs["val"])
        self.epoch = 1
        val_r, failed = self._validate()
        if failed:
            raise TrainingFailed(
                f"{self.run}: the fitted {self.config['model']} predicts NaN or infinite values on {failed} "
                "validation windows"
            )
        self._select(val_r, failed)
        self.history.append(_history_row(1, 0.0, {}, val_r, self.best_val_r, time.perf_counter() - start))
        self._log(f"fitted {self.config['model']}: val r {val_r:.4f}")
        self._save(best=True)

    # gradient descent --------------------------------------------------------------------------

    def fit(self, state: dict | None) -> None:
        """Train by gradient descent from scratch, or on from ``state`` (a ``last.pt``), to the last epoch."""
        optimizer, scheduler = self._optimizer()
        if state is not None:
            self.restore(state, optimizer, scheduler)
            self._check_resume_threads(state.get("threads"))
        else:
            _seed(self.seed + self.proc.rank)  # dropout masks differ between processes
        self._start_state = _copy_state(self.epoch, self.model, optimizer)
        net = self._network()
        pearson, l1, infonce = self.profile["loss_weights"]
        loss_fn = PaperLoss(pearson_weight=pearson, l1_weight=l1, infonce_weight=infonce)
        dataset = self._windows()
        epochs = self.profile["epochs"]
        show = self.proc.main and not self.quiet
        bar = tqdm(
            total=epochs, initial=self.epoch, desc=f"train {self.config['model']}", unit="epoch", disable=not show
        )
        # One batch bar reset every epoch: a new bar per epoch leaves an empty box per epoch in saved notebooks.
        batch_bar = tqdm(total=0, leave=False, unit="batch", disable=not show)
        governor = ThreadGovernor()  # fewer threads while other programs load the cores (dmf2mel.threads)
        while self.epoch < epochs and not self.stopped_early:
            start = time.perf_counter()
            means = self._train_epoch(net, dataset, optimizer, loss_fn, batch_bar, governor)
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            self.epoch += 1
            val_r, failed = self._validate() if self._validation_due(epochs) else (None, 0)
            reason = _divergence(means, failed)
            if reason is not None:
                event, best = self._recover(reason, optimizer, scheduler), False
                self.bad_validations += 1
                self._say(event)
            else:
                event = ""
                best = val_r is not None and self._select(val_r, failed)
                # until a validation gives a finite r, a validated state with finite predictions stands in as the best
                best = best or (val_r is not None and not self.has_best)
            self._check_patience(val_r is not None or reason is not None)
            self.history.append(
                _history_row(
                    self.epoch, lr, means, val_r, self.best_val_r, time.perf_counter() - start, self.step, event
                )
            )
            self._save(best, optimizer, scheduler)
            self._report_epoch(bar, means, val_r, best and reason is None, epochs)
        batch_bar.close()
        bar.close()
        if not self.has_best:
            raise TrainingFailed(
                f"{self.run}: training diverged and no epoch's model predicted finite values on validation, so there "
                f"is no best.pt (history.csv says when and how); try a lower learning rate (train --lr)"
            )
        if self.stopped_early and not self.diverged:
            patience = self.profile["patience"]
            self._log(f"stopped early after epoch {self.epoch}: no val improvement in {patience} validations")

    def _recover(self, reason: str, optimizer, scheduler) -> str:
        """After a diverged epoch: the best state so far (or the start) with half the learning rate, or a stop.

        Returns the sentence that says which."""
        if self.recoveries >= MAX_RECOVERIES:
            self.stopped_early = self.diverged = True
            kept = f"best.pt holds epoch {self.best_epoch}" if self.has_best else "no state is kept as best"
            return f"epoch {self.epoch} diverged ({reason}) after {MAX_RECOVERIES} recoveries: training stopped; {kept}"
        source = self._best_state or self._start_state
        self.model.load_state_dict(source["model"])
        optimizer.load_state_dict(source["optimizer"])
        for group, scheduled in zip(optimizer.param_groups, scheduler.get_last_lr()):
            group["lr"] = scheduled * RECOVERY_LR_FACTOR  # StepLR goes on from this value
        self.recoveries += 1
        where = f"epoch {source['epoch']}" if source["epoch"] else "the start"
        return (
            f"epoch {self.epoch} diverged ({reason}): restored the state of {where} and cut the learning rate to "
            f"{optimizer.param_groups[0]['lr']:.3g} (recovery {self.recoveries} of {MAX_RECOVERIES})"
        )

    def _optimizer(self):
        """Adam and the StepLR schedule with the profile's hyper-parameters."""
        profile = self.profile
        optimizer = torch.optim.Adam(
            self.model.parameters(), lr=profile["lr"], betas=tuple(profile["betas"]), eps=profile["eps"]
        )
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=profile["step_size"], gamma=profile["gamma"])
        return optimizer, scheduler

    def _network(self) -> nn.Module:
        """The model, wrapped for gradient averaging when several processes train it."""
        if self.proc.world == 1:
            return self.model
        device_ids = [self.proc.device.index] if self.proc.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)

    def _windows(self) -> RandomWindows:
        """The training windows: random windows of the train parts, redrawn every epoch."""
        return RandomWindows(
            self.data,
            "train",
            self.train_recs,
            self.window,
            self.index,
            windows_per_recording=self.profile["windows_per_recording"],
            unknown_fraction=self.profile["unknown_fraction"],
            seed=self.seed,
        )

    def _train_epoch(self, net, dataset, optimizer, loss_fn, batch_bar, governor) -> dict[str, float]:
        """One pass over this epoch's windows: the mean loss terms over every process's windows of the steps that
        updated the weights, and the gradient norms (``grad_norm``, ``grad_norm_max``, ``clipped_steps``,
        ``skipped_steps``, ``steps``)."""
        proc = self.proc
        dataset.set_epoch(self.epoch)
        batches = _epoch_batches(len(dataset), self.profile["batch_size"], self.seed, self.epoch, proc)
        loader = DataLoader(
            dataset, batch_sampler=batches, num_workers=self.workers, pin_memory=proc.device.type == "cuda"
        )
        clip = self.profile["clip_grad_norm"]
        sums = torch.zeros(5, dtype=torch.float64)  # loss, r, l1, infonce, windows
        norms, skipped = [], 0
        net.train()
        batch_bar.reset(total=len(batches))
        batch_bar.set_description(f"epoch {self.epoch + 1}")
        for batch in loader:
            eeg = batch["eeg"].to(proc.device, non_blocking=True)
            mel = batch["mel"].to(proc.device, non_blocking=True)
            subject = batch["subject"].to(proc.device, non_blocking=True)
            terms = loss_fn.terms(net(eeg, subject), mel)
            loss = loss_fn.combine(terms)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # the norm before clipping; with several processes the gradients are already averaged, so every process
            # sees the same norm and skips the same steps
            norm = float(
                torch.nn.utils.clip_grad_norm_(
                    self.model.parameters(), math.inf if clip is None else clip, error_if_nonfinite=False
                )
            )
            values = [float(v.detach()) for v in (loss, terms["r"], terms["l1"], terms["infonce"])]
            if not math.isfinite(norm) or (proc.world == 1 and not all(map(math.isfinite, values))):
                skipped += 1  # never an update from a non-finite loss or gradient
                optimizer.zero_grad(set_to_none=True)
            else:
                self._update(optimizer)
                norms.append(norm)
                n = len(eeg)
                sums += torch.tensor([v * n for v in values] + [n], dtype=torch.float64)
            self.thread_counts.add(torch.get_num_threads())
            batch_bar.update(1)
            governor.update()
        if proc.world > 1:
            dist.all_reduce(sums)
        means = sums[:4] / sums[4] if sums[4] > 0 else torch.full((4,), math.nan, dtype=torch.float64)
        out = {k: (v if math.isfinite(v) else None) for k, v in zip(("loss", "r", "l1", "infonce"), means.tolist())}
        out.update(
            grad_norm=float(np.mean(norms)) if norms else None,
            grad_norm_max=float(np.max(norms)) if norms else None,
            clipped_steps=sum(norm > clip for norm in norms) if clip is not None else 0,
            skipped_steps=skipped,
            steps=len(batches),
        )
        return out

    def _update(self, optimizer) -> None:
        """One optimiser step, at a fraction of the scheduled learning rate during the warm-up."""
        warmup = self.profile["warmup_steps"]
        factor = min(1.0, (self.step + 1) / warmup) if warmup else 1.0
        scheduled = [group["lr"] for group in optimizer.param_groups]
        if factor < 1.0:
            for group in optimizer.param_groups:
                group["lr"] *= factor
        optimizer.step()
        for group, lr in zip(optimizer.param_groups, scheduled):
            group["lr"] = lr  # StepLR scales what the group holds: give it back the scheduled value
        self.step += 1

    def _validation_due(self, epochs: int) -> bool:
        """Validate every ``val_every`` epochs and after the last."""
        return self.epoch % self.profile["val_every"] == 0 or self.epoch == epochs

    def _check_patience(self, validated: bool) -> None:
        patience = self.profile["patience"]
        if validated and patience is not None and self.bad_validations >= patience:
            self.stopped_early = True

    def _report_epoch(self, bar, means: dict, val_r: float | None, improved: bool, epochs: int) -> None:
        loss = means["loss"]
        bar.update(1)
        bar.set_postfix(
            loss="-" if loss is None else f"{loss:.3f}",
            val_r="-" if val_r is None else f"{val_r:.4f}",
            best=f"{self.best_val_r:.4f}",
        )
        train_r = means["r"]
        self._log(
            f"epoch {self.epoch}/{epochs}  loss {'-' if loss is None else f'{loss:.4f}'}  "
            f"train r {'-' if train_r is None else f'{train_r:.4f}'}  "
            + ("" if val_r is None else f"val r {val_r:.4f}{'  (best)' if improved else ''}")
        )


def _copy_state(epoch: int, model: nn.Module, optimizer) -> dict:
    """A copy of the weights and the optimiser's state, to return to after a diverged epoch."""
    return {
        "epoch": epoch,
        "model": {key: value.detach().clone() for key, value in model.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()) if optimizer is not None else {},
    }


def _divergence(means: dict, failed_windows: int) -> str | None:
    """Why an epoch diverged (None: it did not): most steps skipped, or non-finite predictions on validation."""
    reasons = []
    if 2 * means["skipped_steps"] > means["steps"]:
        reasons.append(f"{means['skipped_steps']} of {means['steps']} steps had a non-finite loss or gradient")
    if failed_windows:
        reasons.append(f"its model predicted NaN or infinite values in {failed_windows} validation windows")
    return "; ".join(reasons) or None


def train(
    data_folder: str | Path,
    run: str | Path,
    model: str | None = None,
    profile: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    resume: bool = False,
    held_out: Sequence[str] | None = None,
    quiet: bool = False,
    val_every: int | None = None,
    patience: int | None = None,
    workers: int = 0,
    test: bool = True,
    n_null: int = N_NULL,
    lr: float | None = None,
) -> dict:
    """Train a model on a split_data folder into the run folder ``run``.

    Parameters
    ----------
    data_folder : path
        A SparrKULee ``split_data`` folder (64-channel EEG, 10 mel bands).
    run : path
        The run folder: new or empty, or an existing run with ``resume=True``; a folder holding only the
        ``config.json`` of a run that stopped before its first epoch ended is started again. The run is locked
        (:func:`~dmf2mel.checkpoint.run_lock`) while it trains: a second process on it is refused.
    model : str, optional
        A name in :data:`dmf2mel.models.registry.MODELS`: ``"dmf2mel"``, ``"cnn"``, ``"vlaai"``, ``"linear"`` or an
        ablation such as ``"dmf2mel-no-mamba"`` (:data:`~dmf2mel.models.registry.ABLATIONS`). Default: ``"dmf2mel"``
        (on resume: the run's model).
    profile : {"quick", "paper"}, optional
        Default: ``"quick"`` (on resume: the run's profile).
    epochs, val_every, patience : int, optional
        Override the profile's values (on resume: default to the run's).
    lr : float, optional
        Override the profile's learning rate (on resume: defaults to the run's).
    seed : int, optional
        Default 0 (on resume: the run's seed).
    device : str, optional
        ``"cpu"`` or ``"cuda"`` (default: cuda when available).
    resume : bool
        Continue the run in ``run`` from its ``last.pt``; the model and config must match.
    held_out : sequence of str, optional
        Subjects kept out of training for the unknown-subject protocol (default: the corpus
        metadata's, or sub-072..sub-085 for real SparrKULee data).
    quiet : bool
        Log lines instead of progress bars.
    workers : int
        DataLoader worker processes.
    test : bool
        Evaluate ``best.pt`` on the test parts at the end (writes ``metrics.json``).
    n_null : int
        Null draws for the chance levels of the final evaluation.

    Returns
    -------
    dict
        ``run``, ``epochs`` (completed), ``best_epoch``, ``best_val_r``, ``stopped_early``,
        ``seconds`` and ``metrics`` (the final evaluation, or None).
    """
    run = Path(run)
    device = None if device is None else check_device("device", device)
    if epochs is not None:
        check_int("epochs", epochs, minimum=1)
    if val_every is not None:
        check_int("val_every", val_every, minimum=1)
    if patience is not None:
        check_int("patience", patience, minimum=1)
    if seed is not None:
        check_int("seed", seed, minimum=0)
    check_int("workers", workers, minimum=0)
    check_int("n_null", n_null, minimum=0)
    if lr is not None:
        check_positive_number("lr", lr)
    check_writable("run", run)
    main_process = int(os.environ.get("RANK", "0")) == 0  # only rank 0 writes, so only rank 0 locks the run
    with run_lock(run) if main_process else contextlib.nullcontext():
        return _train_locked(
            data_folder,
            run,
            model,
            profile,
            epochs,
            seed,
            device,
            resume,
            held_out,
            quiet,
            val_every,
            patience,
            workers,
            test,
            n_null,
            lr,
            main_process,
        )


def _train_locked(
    data_folder,
    run: Path,
    model,
    profile,
    epochs,
    seed,
    device,
    resume,
    held_out,
    quiet,
    val_every,
    patience,
    workers,
    test,
    n_null,
    lr,
    main_process: bool,
) -> dict:
    """:func:`train` with its arguments checked, holding the run's lock (on the process that writes)."""
    if _check_run_folder(run, resume) and main_process:
        for name in (CONFIG_FILE, HISTORY_FILE):
            (run / name).unlink(missing_ok=True)
        print(f"{run} held a run that stopped before its first epoch ended (no {LAST_CHECKPOINT}): starting it again")
    stored = read_config(run) if resume else None
    # on resume, what the command leaves out is taken from the run (what it states must match)
    model = model or (stored["model"] if stored else "dmf2mel")
    profile = profile or (stored["profile"] if stored else "quick")
    seed = seed if seed is not None else (stored["seed"] if stored else 0)
    check_option("profile", profile, PROFILES)
    proc = _start_process(device)
    configure_threads()
    started = time.perf_counter()
    try:
        overrides = {"epochs": epochs, "val_every": val_every, "patience": patience, "lr": lr}
        chosen = PROFILES[profile]
        if stored is not None:
            # a run written before the training guard resumes as it was trained: no warm-up, no clipping
            old_run = {key: value for key, value in _GUARD_FIELDS.items() if key not in stored["train"]}
            chosen = dataclasses.replace(chosen, **old_run)
            stored = {**stored, "train": {**old_run, **stored["train"]}}
        for key, value in overrides.items():
            if value is None and stored is not None and stored.get("profile") == profile:
                value = stored["train"][key]  # resuming: keep the run's own value unless told otherwise
            if value is not None:
                chosen = dataclasses.replace(chosen, **{key: value})
        if stored is not None and held_out is None:
            held_out = stored["data"]["held_out"]
        data = SplitData(data_folder, n_chans=N_CHANS, n_mels=N_MELS)
        config = make_config(data, model, chosen, seed, held_out)
        open_data_for(config, data.folder)  # refuse data with another channel count before writing
        state = None
        if stored is not None:
            # a run written before fingerprints existed adopts the data it is resumed on
            stored_data = {"fingerprint": config["data"]["fingerprint"], **stored["data"]}
            stored = {**stored, "data": stored_data}
            check_same_data(run, stored_data["fingerprint"], data, stored_data["subjects"])
            differences = _differences(stored, config)
            if differences:
                raise UserError(
                    f"resume: {run} was trained with another setup:\n  " + "\n  ".join(differences), parameter="resume"
                )
            state = load_checkpoint(run / LAST_CHECKPOINT)
            check_checkpoint_config(run / LAST_CHECKPOINT, state, stored)
        trainer = _Trainer(config, data, run, proc, quiet, workers)
        if proc.main and (stored is None or stored != config):
            write_config(run, config)
        if model_spec(model).closed_form:
            trainer.fit_closed_form(state)
        else:
            trainer.fit(state)
        metrics = None
        if test and proc.main:
            metrics = evaluate_run(run, data.folder, device=str(proc.device), n_null=n_null, seed=seed)
        if proc.world > 1:
            dist.barrier()
        return {
            "run": str(run),
            "epochs": trainer.epoch,
            "best_epoch": trainer.best_epoch,
            "best_val_r": trainer.best_val_r,
            "stopped_early": trainer.stopped_early,
            "seconds": time.perf_counter() - started,
            "metrics": metrics,
        }
    finally:
        if proc.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
