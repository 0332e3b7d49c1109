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

Every epoch ends with an atomic ``last.pt`` (model, optimiser, scheduler, the RNG states of every
process, epoch, config, history); an improvement on val also writes ``best.pt``. ``resume=True``
continues from ``last.pt``; the windows of an epoch depend only on ``(seed, epoch)``, so on CPU a
resumed run ends bit-identical to an uninterrupted one.

Multi-GPU / multi-node: launch with ``torchrun --nproc_per_node N -m dmf2mel train ...``. Each
process trains on its share of every epoch's windows (``batch_size`` is per process), gradients are
averaged by :class:`~torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on GPU), and
only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
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
    LAST_CHECKPOINT,
    load_checkpoint,
    model_from_config,
    read_config,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_config,
    write_history,
)
from dmf2mel.data.datasets import RandomWindows, SubjectIndex
from dmf2mel.data.sparrkulee import N_CHANS, N_MELS, SFREQ, SplitData
from dmf2mel.errors import UserError
from dmf2mel.models.registry import model_spec
from dmf2mel.validation import check_folder, check_option
from dmf2mel.threads import ThreadGovernor
from dmf2mel.threads import configure as configure_threads
from dmf2mel.evaluate import (
    default_held_out,
    evaluate_run,
    open_data_for,
    predict_recordings,
)
from dmf2mel.losses import PaperLoss
from dmf2mel.metrics import N_NULL, paper_metric

#: Layout version of config.json.
CONFIG_VERSION = 1


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
    """The config of a new run: model and its config, profile, seed, data subjects and window."""
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
            },
        }
    )


#: Config entries that may change on resume: the data may have moved; more epochs may be wanted.
_RESUMABLE_CHANGES = {("data", "folder"), ("train", "epochs")}


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


def _check_run_folder(run: Path, resume: bool) -> None:
    """Refuse to clobber an existing run, or to resume one that is not there."""
    check_folder("run", run)
    if resume:
        if not (run / LAST_CHECKPOINT).is_file() or not (run / CONFIG_FILE).is_file():
            raise UserError(
                f"resume: {run} holds no run to resume (no {CONFIG_FILE} and {LAST_CHECKPOINT})", parameter="resume"
            )
    elif run.is_dir() and any(run.iterdir()):
        raise UserError(
            f"run: {run} exists and is not empty; resume=True continues that run, "
            "or choose a new folder (nothing was changed)",
            parameter="run",
        )


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
) -> float:
    """Paper-metric Pearson r (no null) on the val parts; every process gets the same number."""
    was_training = model.training
    model.eval()
    mine = list(recordings)[proc.rank :: proc.world]
    predictions = predict_recordings(model, data, "val", mine, index, window, proc.device)
    model.train(was_training)
    every = [p for part in _gather(proc, predictions) for p in part]
    r = paper_metric(every, n_null=0)["r"]
    return float("nan") if r is None else r


def _history_row(
    epoch: int, lr: float, terms: dict[str, float], val_r: float | None, best: float, seconds: float
) -> dict:
    return {
        "epoch": epoch,
        "lr": lr,
        "loss": terms.get("loss"),
        "train_r": terms.get("r"),
        "train_l1": terms.get("l1"),
        "train_infonce": terms.get("infonce"),
        "val_r": val_r,
        "best_val_r": best if math.isfinite(best) else None,
        "seconds": round(seconds, 3),
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
        self.best_val_r = -math.inf
        self.best_epoch = 0
        self.bad_validations = 0
        self.stopped_early = False

    # checkpoints -------------------------------------------------------------------------------

    def _state(self, optimizer=None, scheduler=None) -> dict:
        rngs = _gather(self.proc, rng_state())
        return {
            "epoch": self.epoch,
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
        }

    def _save(self, improved: bool, optimizer=None, scheduler=None) -> None:
        state = self._state(optimizer, scheduler)  # every process joins the RNG gather
        if not self.proc.main:
            return
        write_history(self.run, self.history)
        # until a validation gives a finite r, the latest state stands in as the best one
        if improved or not (self.run / BEST_CHECKPOINT).exists():
            save_checkpoint(self.run / BEST_CHECKPOINT, state)
        save_checkpoint(self.run / LAST_CHECKPOINT, state)

    def restore(self, state: dict, optimizer=None, scheduler=None) -> None:
        self.model.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self.history = list(state["history"])
        self.best_val_r = state["best_val_r"]
        self.best_epoch = state["best_epoch"]
        self.bad_validations = state["bad_validations"]
        self.stopped_early = state["stopped_early"]
        rngs = state["rng"]
        set_rng_state(rngs[self.proc.rank] if len(rngs) == self.proc.world else rngs[0])

    def _log(self, text: str) -> None:
        if self.quiet and self.proc.main:
            print(text, flush=True)

    # validation and model selection ------------------------------------------------------------

    def _validate_and_select(self) -> tuple[float, bool]:
        val_r = validate(self.model, self.data, self.val_recs, self.index, self.window, self.proc)
        improved = math.isfinite(val_r) and val_r > self.best_val_r
        if improved:
            self.best_val_r, self.best_epoch, self.bad_validations = val_r, self.epoch, 0
        else:
            self.bad_validations += 1
        return val_r, improved

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
        val_r, improved = self._validate_and_select()
        self.history.append(_history_row(1, 0.0, {}, val_r, self.best_val_r, time.perf_counter() - start))
        self._log(f"fitted {self.config['model']}: val r {val_r:.4f}")
        self._save(improved=True)

    # gradient descent --------------------------------------------------------------------------

    def fit(self, state: dict | None) -> None:
        """Train by gradient descent from scratch, or on from ``state`` (a ``last.pt``), to the last epoch."""
        optimizer, scheduler = self._optimizer()
        if state is not None:
            self.restore(state, optimizer, scheduler)
        else:
            _seed(self.seed + self.proc.rank)  # dropout masks differ between processes
        net = self._network()
        loss_fn = PaperLoss()
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
            val_r, improved = self._validate_if_due(epochs)
            self.history.append(
                _history_row(self.epoch, lr, means, val_r, self.best_val_r, time.perf_counter() - start)
            )
            self._save(improved, optimizer, scheduler)
            self._report_epoch(bar, means, val_r, improved, epochs)
        batch_bar.close()
        bar.close()
        if self.stopped_early:
            patience = self.profile["patience"]
            self._log(f"stopped early after epoch {self.epoch}: no val improvement in {patience} validations")

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
        """One pass over this epoch's windows; the mean loss terms over every process's windows."""
        proc = self.proc
        dataset.set_epoch(self.epoch)
        batches = _epoch_batches(len(dataset), self.profile["batch_size"], self.seed, self.epoch, proc)
        loader = DataLoader(
            dataset, batch_sampler=batches, num_workers=self.workers, pin_memory=proc.device.type == "cuda"
        )
        sums = torch.zeros(5, dtype=torch.float64)  # loss, r, l1, infonce, windows
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
            optimizer.step()
            n = len(eeg)
            values = [loss, terms["r"], terms["l1"], terms["infonce"]]
            sums += torch.tensor([float(v.detach()) * n for v in values] + [n], dtype=torch.float64)
            batch_bar.update(1)
            governor.update()
        if proc.world > 1:
            dist.all_reduce(sums)
        return dict(zip(("loss", "r", "l1", "infonce"), (sums[:4] / sums[4]).tolist()))

    def _validate_if_due(self, epochs: int) -> tuple[float | None, bool]:
        """Validate every ``val_every`` epochs and after the last; decide on early stopping."""
        if self.epoch % self.profile["val_every"] and self.epoch != epochs:
            return None, False
        val_r, improved = self._validate_and_select()
        patience = self.profile["patience"]
        self.stopped_early = patience is not None and self.bad_validations >= patience
        return val_r, improved

    def _report_epoch(self, bar, means: dict[str, float], val_r: float | None, improved: bool, epochs: int) -> None:
        bar.update(1)
        bar.set_postfix(
            loss=f"{means['loss']:.3f}", val_r="-" if val_r is None else f"{val_r:.4f}", best=f"{self.best_val_r:.4f}"
        )
        self._log(
            f"epoch {self.epoch}/{epochs}  loss {means['loss']:.4f}  train r {means['r']:.4f}  "
            + ("" if val_r is None else f"val r {val_r:.4f}{'  (best)' if improved else ''}")
        )


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
) -> dict:
    """Train a model on a split_data folder into the run folder ``run``.

    Parameters
    ----------
    data_folder : path
        A SparrKULee ``split_data`` folder (64-channel EEG, 10 mel bands).
    run : path
        The run folder: new or empty, or an existing run with ``resume=True``.
    model : str, optional
        A name in :data:`dmf2mel.models.registry.MODELS`: ``"dmf2mel"``, ``"cnn"``, ``"vlaai"``, ``"linear"`` or an
        ablation such as ``"dmf2mel-no-mamba"`` (:data:`~dmf2mel.models.registry.ABLATIONS`). Default: ``"dmf2mel"``
        (on resume: the run's model).
    profile : {"quick", "paper"}, optional
        Default: ``"quick"`` (on resume: the run's profile).
    epochs, val_every, patience : int, optional
        Override the profile's values (on resume: default to the run's).
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
    _check_run_folder(run, resume)
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
        overrides = {"epochs": epochs, "val_every": val_every, "patience": patience}
        chosen = PROFILES[profile]
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
            differences = _differences(stored, config)
            if differences:
                raise UserError(
                    f"resume: {run} was trained with another setup:\n  " + "\n  ".join(differences), parameter="resume"
                )
            state = load_checkpoint(run / LAST_CHECKPOINT)
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
