"""Match-mismatch: given an EEG segment and several stimulus segments, pick the one that was heard.

The ICASSP auditory-EEG challenges' task 1, and what most studies of auditory EEG decoding report. Two protocols
(:data:`PROTOCOLS`), as the challenges published them:

- ``"2024"``: 5 s segments, the matched stimulus segment and four mismatched ones (chance 20 %). The mismatched
  segments are drawn at random among the windows of the *same story* after it is chunked into non-overlapping
  windows of the segment length (never the chunk that overlaps the matched segment);
- ``"2023"``: 3 s segments, the matched one and one mismatched (chance 50 %), taken close in time: the segment
  starting 1 s after the end of the matched one, or, where the story ends too soon, the one ending 1 s before its
  start.

For the evaluation the EEG of a recording part is cut into non-overlapping segments, so that trials are
independent and the binomial interval of :func:`accuracy` holds; the matched candidate sits at a random position.

Any model that reconstructs the stimulus decides by correlation (:func:`correlation_scores`): the candidate whose
Pearson r with the reconstruction (mean over bands) is highest wins. The dilated-convolution baseline
(:class:`dmf2mel.models.match_mismatch.DilatedConvMatchMismatch`) scores the candidates itself; :func:`train_model`
trains it on a corpus and :func:`cached_model` keeps the trained weights in the cache, next to the book's runs.
:func:`challenge_trials` reads the release's task-1 test files (``TASK1_match_mismatch``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.stats
import torch
from torch import nn

from dmf2mel import cache, metrics
from dmf2mel.data.sparrkulee import SFREQ, SPLITS, SplitData
from dmf2mel.errors import DataError, UserError
from dmf2mel.io import save_json
from dmf2mel.models import match_mismatch as model_module
from dmf2mel.models.match_mismatch import DilatedConvMatchMismatch
from dmf2mel.validation import check_int, check_option, check_positive_number

#: How mismatched candidates are drawn: from the chunked story, or next to the matched segment.
MISMATCH_KINDS = ("story", "adjacent")
CONFIDENCE = 0.95
PREDICT_BATCH = 64


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A match-mismatch protocol.

    Attributes
    ----------
    name : str
    segment_s : float
        Segment length in seconds.
    n_candidates : int
        Stimulus segments per trial: one matched, ``n_candidates - 1`` mismatched.
    mismatch : {"story", "adjacent"}
        ``"story"``: mismatched segments drawn at random among the non-overlapping chunks of the same story;
        ``"adjacent"``: the segment ``spacing_s`` after the end of the matched one (or before its start).
    spacing_s : float
        Gap between matched and mismatched segment for ``"adjacent"``.
    """

    name: str
    segment_s: float
    n_candidates: int
    mismatch: str
    spacing_s: float = 1.0

    def __post_init__(self):
        check_positive_number("segment_s", self.segment_s)
        check_option("mismatch", self.mismatch, MISMATCH_KINDS)
        if check_int("n_candidates", self.n_candidates, minimum=2) != 2 and self.mismatch == "adjacent":
            raise UserError("an 'adjacent' protocol has one mismatched candidate (n_candidates=2)", "n_candidates")

    @property
    def chance(self) -> float:
        """The accuracy of a guess: ``1 / n_candidates``."""
        return 1.0 / self.n_candidates

    def segment_samples(self, sfreq: float = SFREQ) -> int:
        return int(round(self.segment_s * sfreq))

    def with_segment(self, seconds: float) -> "Protocol":
        """The same protocol with segments of ``seconds``."""
        return dataclasses.replace(self, segment_s=float(seconds))


PROTOCOLS = {
    "2024": Protocol("2024", 5.0, 5, "story"),
    "2023": Protocol("2023", 3.0, 2, "adjacent"),
}


def protocol(name: str | Protocol) -> Protocol:
    """A protocol by name (``"2024"``, ``"2023"``), or ``name`` itself when it is one."""
    if isinstance(name, Protocol):
        return name
    return PROTOCOLS[check_option("protocol", str(name), PROTOCOLS)]


@dataclasses.dataclass(frozen=True)
class Trials:
    """Match-mismatch trials.

    Attributes
    ----------
    eeg : (n, time, n_chans) float32
    candidates : (n, K, time, n_features) float32
    label : (n,) int
        Position of the matched candidate.
    subject, stimulus : (n,) str arrays
    """

    eeg: np.ndarray
    candidates: np.ndarray
    label: np.ndarray
    subject: np.ndarray
    stimulus: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def select(self, mask) -> "Trials":
        """The trials where ``mask`` (a boolean or index array) holds."""
        return Trials(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))


def mismatched_starts(
    start: int, length: int, n_story: int, proto: Protocol, rng: np.random.Generator, sfreq: float = SFREQ
) -> np.ndarray:
    """Starts (in story samples) of the mismatched candidates of the segment at ``start`` of a story.

    Parameters
    ----------
    start, length : int
        The matched segment, ``story[start : start + length]``.
    n_story : int
        Samples in the story.
    """
    if proto.mismatch == "adjacent":
        gap = int(round(proto.spacing_s * sfreq))
        after, before = start + length + gap, start - gap - length
        if after + length <= n_story:
            return np.array([after])
        if before >= 0:
            return np.array([before])
        raise UserError(f"a story of {n_story} samples is too short for 'adjacent' segments of {length} samples")
    chunks = np.arange(0, n_story - length + 1, length)
    pool = chunks[(chunks + length <= start) | (chunks >= start + length)]  # chunks not overlapping the matched one
    n_needed = proto.n_candidates - 1
    if len(pool) < n_needed:
        raise UserError(
            f"a story of {n_story / sfreq:.0f} s has {len(pool)} chunks of {length / sfreq:g} s beside a segment, "
            f"too few for {n_needed} mismatched candidates: use shorter segments or fewer candidates"
        )
    return rng.choice(pool, size=n_needed, replace=False)


def recording_trials(
    eeg: np.ndarray,
    story: np.ndarray,
    offset: int,
    proto: Protocol,
    rng: np.random.Generator,
    hop: int | None = None,
    sfreq: float = SFREQ,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trials of one recording part.

    Parameters
    ----------
    eeg : (time, n_chans) array
        The EEG of the part.
    story : (n_story, n_features) array
        The stimulus feature of the whole story (the part's stimulus is ``story[offset : offset + time]``).
    offset : int
        Where the part starts in the story.
    hop : int, optional
        Samples between consecutive segments; default the segment length (non-overlapping, independent trials).

    Returns
    -------
    eeg (n, length, n_chans), candidates (n, K, length, n_features), label (n,)
    """
    length = proto.segment_samples(sfreq)
    hop = hop or length
    starts = np.arange(0, len(eeg) - length + 1, hop)
    eeg_segments, candidates, labels = [], [], []
    for start in starts:
        others = mismatched_starts(offset + start, length, len(story), proto, rng, sfreq)
        label = int(rng.integers(proto.n_candidates))
        order = np.insert(others, label, offset + start)
        eeg_segments.append(eeg[start : start + length])
        candidates.append(np.stack([story[s : s + length] for s in order]))
        labels.append(label)
    n_chans, n_features = eeg.shape[1], story.shape[1]
    return (
        np.array(eeg_segments, dtype=np.float32).reshape(-1, length, n_chans),
        np.array(candidates, dtype=np.float32).reshape(-1, proto.n_candidates, length, n_features),
        np.array(labels, dtype=np.int64),
    )


def make_trials(
    data: SplitData,
    split: str = "test",
    proto: str | Protocol = "2024",
    subjects: Sequence[str] | None = None,
    feature: str = "mel",
    seed: int = 0,
    hop_s: float | None = None,
    story_pool: bool = True,
) -> Trials:
    """Trials of every recording part of ``split`` (z-scored as :meth:`SplitData.pair` does).

    Parameters
    ----------
    data : SplitData
    split : {"train", "val", "test"}
    proto : str or Protocol
    subjects : list of str, optional
        Default: every subject with that split.
    feature : {"mel", "envelope"}
        The stimulus representation of the candidates.
    seed : int
        Decides the mismatched candidates and the positions of the matched ones.
    hop_s : float, optional
        Seconds between segments (default: the segment length).
    story_pool : bool
        Draw mismatched candidates from the whole story (all three parts, the protocol); False: from the part
        itself only (for training, so that no stimulus of the validation or test parts is seen).
    """
    proto = protocol(proto)
    check_option("split", split, SPLITS)
    check_option("feature", feature, ("mel", "envelope"))
    rng = np.random.default_rng(seed)
    hop = int(round(hop_s * SFREQ)) if hop_s else None
    parts = {name: [] for name in ("eeg", "candidates", "label", "subject", "stimulus")}
    recordings = data.recordings_in(split, feature, subjects=subjects)
    if not recordings:
        raise UserError(f"{data.folder}: no {split} recordings with {feature} for subjects {subjects}", "subjects")
    for rec in recordings:
        eeg, target = data.pair(split, rec.subject, rec.stimulus, feature)
        story, offset = target, 0
        if story_pool:  # the story is the recording's parts end to end
            present = [s for s in SPLITS if data.has(s, rec.subject, rec.stimulus, feature)]
            pieces = [target if s == split else data.pair(s, rec.subject, rec.stimulus, feature)[1] for s in present]
            offset = sum(len(piece) for piece in pieces[: present.index(split)])
            story = np.concatenate(pieces)
        eeg_segments, candidates, labels = recording_trials(eeg, story, offset, proto, rng, hop)
        for name, value in (("eeg", eeg_segments), ("candidates", candidates), ("label", labels)):
            parts[name].append(value)
        parts["subject"].append(np.full(len(labels), rec.subject))
        parts["stimulus"].append(np.full(len(labels), rec.stimulus))
    trials = Trials(**{name: np.concatenate(values) for name, values in parts.items()})
    if not len(trials):
        longest = max(data.n_samples(split, rec.subject, rec.stimulus, feature) for rec in recordings) / SFREQ
        raise UserError(
            f"segments of {proto.segment_s:g} s do not fit in any {split} part of {data.folder} (the longest has "
            f"{longest:g} s): use shorter segments"
        )
    return trials


# ---------------------------------------------------------------------------------------------------------------
# Decisions and accuracy
# ---------------------------------------------------------------------------------------------------------------


def correlation_scores(reconstruction: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Pearson r over time between a reconstruction and each candidate, mean over features.

    Parameters
    ----------
    reconstruction : (n, time, n_features) array
    candidates : (n, K, time, n_features) array

    Returns
    -------
    (n, K) array (a constant candidate scores -inf, never chosen over a real one)
    """
    r = metrics.pearsonr_time(np.asarray(reconstruction)[:, None], candidates)
    valid = ~np.isnan(r)
    total = np.where(valid, r, 0.0).sum(axis=-1)
    count = valid.sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), -np.inf)


def accuracy(choices, labels, n_candidates: int, confidence: float = CONFIDENCE) -> dict:
    """Accuracy with its exact binomial (Clopper-Pearson) interval and a one-sided test against chance.

    Returns
    -------
    dict with ``accuracy``, ``correct``, ``n``, ``chance``, ``ci_low``, ``ci_high``, ``p_value`` (binomial test of
    accuracy > chance) and ``confidence``.
    """
    choices, labels = np.asarray(choices), np.asarray(labels)
    if choices.shape != labels.shape or labels.size == 0:
        raise UserError(f"need as many choices as labels (at least one), got {choices.shape} and {labels.shape}")
    correct, n = int((choices == labels).sum()), int(labels.size)
    test = scipy.stats.binomtest(correct, n, 1.0 / n_candidates, alternative="greater")
    interval = scipy.stats.binomtest(correct, n).proportion_ci(confidence, method="exact")
    return {
        "accuracy": correct / n,
        "correct": correct,
        "n": n,
        "chance": 1.0 / n_candidates,
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "p_value": float(test.pvalue),
        "confidence": confidence,
    }


def reconstruct(model: nn.Module, eeg: np.ndarray, subject_ids=None, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Run a reconstruction model on each EEG segment alone: (n, time, n_chans) -> (n, time, n_outputs).

    ``model.forward(eeg (batch, time, n_chans), subject (batch,))``; ``subject_ids`` (n,) ints, default -1 (unknown).
    """
    ids = np.full(len(eeg), -1) if subject_ids is None else np.asarray(subject_ids)
    out = []
    model.eval()
    with torch.no_grad():
        for first in range(0, len(eeg), batch_size):
            batch = torch.as_tensor(eeg[first : first + batch_size], dtype=torch.float32)
            subject = torch.as_tensor(ids[first : first + batch_size], dtype=torch.int64)
            out.append(model(batch, subject).float().numpy())
    return np.concatenate(out)


def classifier_scores(model: DilatedConvMatchMismatch, trials: Trials, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """The match-mismatch model's logits (n, K)."""
    out = []
    model.eval()
    with torch.no_grad():
        for first in range(0, len(trials), batch_size):
            eeg = torch.as_tensor(trials.eeg[first : first + batch_size])
            out.append(model(eeg, torch.as_tensor(trials.candidates[first : first + batch_size])).numpy())
    return np.concatenate(out)


def score_trials(scores: np.ndarray, trials: Trials) -> dict:
    """Accuracy (:func:`accuracy`) of the decisions ``argmax(scores)``, overall and per subject."""
    choices = np.argmax(scores, axis=1)
    k = trials.candidates.shape[1]
    result = accuracy(choices, trials.label, k)
    result["per_subject"] = {
        str(s): float(np.mean(choices[trials.subject == s] == trials.label[trials.subject == s]))
        for s in sorted(set(trials.subject))
    }
    return result


def accuracy_by_length(
    scorer: Callable[[Trials], np.ndarray],
    data: SplitData,
    lengths_s: Sequence[float],
    proto: str | Protocol = "2024",
    split: str = "test",
    subjects: Sequence[str] | None = None,
    feature: str = "mel",
    seed: int = 0,
) -> dict[float, dict]:
    """:func:`score_trials` for each segment length of ``lengths_s`` (seconds); ``scorer(trials) -> (n, K)``."""
    proto = protocol(proto)
    results = {}
    for seconds in lengths_s:
        trials = make_trials(data, split, proto.with_segment(seconds), subjects, feature, seed)
        results[float(seconds)] = score_trials(scorer(trials), trials)
    return results


# ---------------------------------------------------------------------------------------------------------------
# Training the dilated-convolution baseline
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """How :func:`train_model` trains: Adam at its default rate and batch 64 as the challenge did; a hop of 2 s
    between training segments (the challenge's 1 s) and few epochs keep it to a minute or two on one CPU core."""

    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    hop_s: float = 2.0
    seed: int = 0


def train_model(
    data: SplitData,
    proto: str | Protocol = "2024",
    feature: str = "mel",
    settings: TrainingSettings = TrainingSettings(),
    subjects: Sequence[str] | None = None,
    progress: bool = False,
) -> tuple[DilatedConvMatchMismatch, list[dict]]:
    """Train the dilated-convolution baseline on the train parts; keep the epoch with the best validation accuracy.

    Every epoch draws new mismatched candidates (from the training part only) and new positions of the matched
    one; validation uses the protocol's trials of the validation parts, drawn once.

    Returns
    -------
    model, history (one dict per epoch: ``epoch``, ``loss``, ``train_accuracy``, ``val_accuracy``, ``seconds``)
    """
    proto = protocol(proto)
    torch.manual_seed(settings.seed)
    val = make_trials(data, "val", proto, subjects, feature, settings.seed)
    model = DilatedConvMatchMismatch(n_chans=val.eeg.shape[2], n_features=val.candidates.shape[3])
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    best, history = None, []
    for epoch in range(1, settings.epochs + 1):
        started = time.perf_counter()
        train = make_trials(
            data, "train", proto, subjects, feature, settings.seed * 1000 + epoch, settings.hop_s, story_pool=False
        )
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(train))
        model.train()
        losses, correct = [], 0
        for first in range(0, len(order), settings.batch_size):
            batch = order[first : first + settings.batch_size]
            logits = model(torch.as_tensor(train.eeg[batch]), torch.as_tensor(train.candidates[batch]))
            target = torch.as_tensor(train.label[batch])
            loss = nn.functional.cross_entropy(logits, target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item() * len(batch))
            correct += int((logits.argmax(1) == target).sum())
        val_accuracy = score_trials(classifier_scores(model, val), val)["accuracy"]
        row = {
            "epoch": epoch,
            "loss": sum(losses) / len(order),
            "train_accuracy": correct / len(order),
            "val_accuracy": val_accuracy,
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        if progress:
            print(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        if best is None or val_accuracy > best[0]:
            best = (val_accuracy, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    model.eval()
    return model, history


MODEL_FILE = "match_mismatch.pt"
HISTORY_FILE = "history.json"
IDENTITY_FILE = "cached_run.json"


def _identity(data: Path, proto: Protocol, feature: str, settings: TrainingSettings) -> dict:
    source = hashlib.sha256()
    for module_file in (Path(__file__), Path(model_module.__file__)):
        source.update(module_file.read_bytes())
    metadata = data / "dmf2mel_corpus.json"
    return {
        "data": str(data.resolve()),
        "corpus_version": json.loads(metadata.read_text())["version"] if metadata.is_file() else None,
        "protocol": dataclasses.asdict(proto),
        "feature": feature,
        "settings": dataclasses.asdict(settings),
        "torch_version": torch.__version__,
        "source": source.hexdigest()[:12],
    }


def cached_model(
    data: str | Path | None = None,
    preset: str = "teaching",
    proto: str | Protocol = "2024",
    feature: str = "mel",
    settings: TrainingSettings = TrainingSettings(),
    root: str | Path | None = None,
    verbose: bool = True,
) -> tuple[DilatedConvMatchMismatch, list[dict]]:
    """The trained baseline and its history, trained now only if no copy of this exact run is cached.

    The run is identified by the corpus, protocol, feature, settings, torch version and the source of this module
    and the model's; it lives in ``cache_dir()/runs`` beside the book's regression runs, built aside and renamed
    into place (:mod:`dmf2mel.cache`), so a killed build never leaves half a run.
    """
    from dmf2mel.data.corpus import cache_dir, default_corpus

    data = Path(data) if data is not None else default_corpus(preset, progress=False)
    proto = protocol(proto)
    identity = _identity(data, proto, feature, settings)
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(root) if root is not None else cache_dir() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{data.name}-match-mismatch-{proto.name}-{feature}-e{settings.epochs}-s{settings.seed}-{digest}"
    with cache.entry_lock(root, folder.name, f"training the match-mismatch baseline {folder.name}", verbose):
        if not _is_complete(folder, identity):

            def build(path: Path) -> None:
                model, history = train_model(SplitData(data), proto, feature, settings)
                path.mkdir()
                torch.save(model.state_dict(), path / MODEL_FILE)
                save_json(path / HISTORY_FILE, history)
                save_json(path / IDENTITY_FILE, identity)

            started = time.perf_counter()
            cache.build_entry(folder, build)
            if verbose:
                print(f"trained the match-mismatch baseline in {time.perf_counter() - started:.0f} s: {folder}")
        elif verbose:
            print(f"using the cached match-mismatch baseline {folder}")
        cache.mark_used(folder)
    history = json.loads((folder / HISTORY_FILE).read_text())
    model = DilatedConvMatchMismatch(n_features=1 if feature == "envelope" else 10)
    model.load_state_dict(torch.load(folder / MODEL_FILE, weights_only=True))
    return model.eval(), history


def _is_complete(folder: Path, identity: dict) -> bool:
    try:
        stored = json.loads((folder / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return stored == identity and (folder / MODEL_FILE).is_file() and (folder / HISTORY_FILE).is_file()


# ---------------------------------------------------------------------------------------------------------------
# The release's task-1 test files
# ---------------------------------------------------------------------------------------------------------------


def challenge_trials(folder: str | Path, feature: str = "mel") -> dict[str, tuple[list[str], Trials]]:
    """Read the release's ``TASK1_match_mismatch`` folder: per subject, segment ids and their trials.

    The folder holds ``sub-XXX_mapping.json`` (``{segment_id: {"eeg": eeg_id, "stimulus": [ids]}}``),
    ``preprocessed_eeg/sub-XXX_eeg.npz`` and ``stimulus/*_{feature}_*chunks.npz``. The labels are unknown
    (``label`` is -1): write the decisions with :func:`write_decisions` and submit them.
    """
    folder = Path(folder)
    mappings = sorted(folder.glob("sub-*_mapping.json"))
    if not mappings:
        raise DataError(f"{folder}: no sub-XXX_mapping.json files (expected the release's TASK1_match_mismatch folder)")
    stimuli: dict[str, np.ndarray] = {}
    for path in sorted((folder / "stimulus").glob(f"*{feature}*chunks.npz")):
        with np.load(path) as archive:
            stimuli.update({key: archive[key] for key in archive.files})
    if not stimuli:
        raise DataError(f"{folder / 'stimulus'}: no *{feature}*chunks.npz archives")
    out = {}
    for mapping_path in mappings:
        subject = mapping_path.name.split("_")[0]
        mapping = json.loads(mapping_path.read_text())
        eeg_path = folder / "preprocessed_eeg" / f"{subject}_eeg.npz"
        if not eeg_path.is_file():
            raise DataError(f"{eeg_path}: missing (named by {mapping_path.name})")
        with np.load(eeg_path) as archive:
            eeg_segments = {key: archive[key] for key in archive.files}
        ids = list(mapping)
        try:
            eeg = np.stack([eeg_segments[mapping[i]["eeg"]] for i in ids]).astype(np.float32)
            candidates = np.stack([[_as_2d(stimuli[s]) for s in mapping[i]["stimulus"]] for i in ids])
        except KeyError as missing:
            raise DataError(f"{mapping_path}: names {missing}, which is not in the EEG or stimulus archives") from None
        if eeg.ndim != 3 or candidates.shape[2] != eeg.shape[1]:
            raise DataError(f"{mapping_path}: EEG segments {eeg.shape} and stimulus segments {candidates.shape} differ")
        out[subject] = (
            ids,
            Trials(
                eeg, candidates.astype(np.float32), np.full(len(ids), -1), np.full(len(ids), subject), np.array(ids)
            ),
        )
    return out


def _as_2d(array: np.ndarray) -> np.ndarray:
    return array[:, None] if array.ndim == 1 else array


def write_decisions(path: str | Path, ids: Sequence[str], scores: np.ndarray) -> Path:
    """The submission of one subject: ``{segment_id: index of the chosen candidate}``."""
    return save_json(Path(path), {i: int(c) for i, c in zip(ids, np.argmax(scores, axis=1))})


# ---------------------------------------------------------------------------------------------------------------
# Scoring a trained reconstruction run
# ---------------------------------------------------------------------------------------------------------------


def load_run(run: str | Path, device: str = "cpu") -> nn.Module:
    """The model of a trained run (``python -m dmf2mel train``) with its ``best.pt`` weights, in eval mode."""
    from dmf2mel.checkpoint import BEST_CHECKPOINT, load_model

    return load_model(run, BEST_CHECKPOINT, device)[1]


def evaluate_run(
    run: str | Path,
    data: str | Path | None = None,
    proto: str | Protocol = "2024",
    lengths_s: Sequence[float] = (),
    split: str = "test",
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Score a trained reconstruction run (``python -m dmf2mel train``) on match-mismatch.

    Every EEG segment of the ``split`` parts is reconstructed on its own with the run's ``best.pt`` (known subjects
    with their id, the run's held-out subjects as unknown subjects) and decided by correlation.

    Returns
    -------
    dict with ``protocol`` (its fields), ``known`` and ``unknown`` (:func:`score_trials`, None without such
    subjects) and ``by_length`` (segment seconds -> :func:`score_trials` of all subjects, for ``lengths_s``).
    """
    from dmf2mel.checkpoint import BEST_CHECKPOINT, load_model
    from dmf2mel.data.datasets import SubjectIndex
    from dmf2mel.evaluate import open_data_for

    proto = protocol(proto)
    check_option("split", split, SPLITS)
    config, model = load_model(run, BEST_CHECKPOINT, device)
    split_data = open_data_for(config, data if data is not None else config["data"]["folder"])
    index = SubjectIndex(config["data"]["subjects"])

    def scorer(trials: Trials) -> np.ndarray:
        ids = np.array([index[s] for s in trials.subject])
        return correlation_scores(reconstruct(model.to(device), trials.eeg, ids), trials.candidates)

    groups = {"known": config["data"]["subjects"], "unknown": config["data"]["held_out"]}
    result = {"run": str(run), "protocol": dataclasses.asdict(proto), "split": split}
    for name, subjects in groups.items():
        present = [s for s in subjects if split_data.recordings_in(split, subjects=[s])]
        if not present:
            result[name] = None
            continue
        trials = make_trials(split_data, split, proto, present, seed=seed)
        result[name] = score_trials(scorer(trials), trials)
    everyone = [s for group in groups.values() for s in group]
    by_length = accuracy_by_length(scorer, split_data, lengths_s, proto, split, everyone, seed=seed)
    result["by_length"] = {str(k): v for k, v in by_length.items()}
    return result


def predict_challenge(run: str | Path, folder: str | Path, out_dir: str | Path, device: str = "cpu") -> list[Path]:
    """Decide every trial of the release's task-1 folder with a reconstruction run; write ``OUT/sub-XXX.json``."""
    from dmf2mel.checkpoint import BEST_CHECKPOINT, load_model
    from dmf2mel.data.datasets import SubjectIndex

    config, model = load_model(run, BEST_CHECKPOINT, device)
    index = SubjectIndex(config["data"]["subjects"])
    written = []
    for subject, (ids, trials) in challenge_trials(folder).items():
        if trials.eeg.shape[2] != config["data"]["n_chans"] or trials.candidates.shape[3] != config["data"]["n_mels"]:
            raise DataError(
                f"{folder}: {subject}'s segments have {trials.eeg.shape[2]} EEG channels and "
                f"{trials.candidates.shape[3]} stimulus features; the run takes {config['data']['n_chans']} and "
                f"{config['data']['n_mels']}"
            )
        reconstruction = reconstruct(model, trials.eeg, np.full(len(ids), index[subject]))
        written.append(
            write_decisions(
                Path(out_dir) / f"{subject}.json", ids, correlation_scores(reconstruction, trials.candidates)
            )
        )
    return written


def summary_line(name: str, result: dict | None) -> str:
    """One line: accuracy, its interval, chance and the p-value of one group of subjects."""
    if result is None:
        return f"{name:>7}: no subjects"
    return (
        f"{name:>7}: accuracy {100 * result['accuracy']:.1f} % [{100 * result['ci_low']:.1f}, "
        f"{100 * result['ci_high']:.1f}] of {result['n']} trials, chance {100 * result['chance']:.0f} %, "
        f"{metrics.format_p(result['p_value'])}"
    )
