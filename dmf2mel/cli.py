"""The command line: ``python -m dmf2mel {simulate,inspect,split,preprocess,train,evaluate,predict,match-mismatch}``.

User errors (:class:`dmf2mel.errors.UserError`: a bad argument, a missing or malformed file) are
printed as one paragraph without a traceback and exit with status 2, and so are the machine's
refusals (no permission, a read-only or full disk), which every writer meets before it replaces
anything (files are written aside and renamed into place). Anything else is a bug and keeps its
traceback. The library names arguments as Python does (``n_held_out``, ``resume=True``); the
messages printed here name the command's flags instead (``--held-out``, ``--resume``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from dmf2mel import threads
from dmf2mel.checkpoint import METRICS_FILE, read_config
from dmf2mel.data.simulation_params import PRESETS
from dmf2mel.data.sparrkulee import find_challenge_subjects
from dmf2mel.errors import UserError
from dmf2mel.evaluate import challenge_files, evaluate_run, parse_subjects, predict_subjects, summary_line
from dmf2mel.metrics import N_NULL, NON_FINITE
from dmf2mel.models.registry import model_names
from dmf2mel.train import PROFILES, train


def _add_simulate(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="write the built-in simulated corpus in the SparrKULee split_data layout",
        description="Simulate speech-like stimuli and 64-channel EEG of several subjects listening to them, "
        "and write them in the SparrKULee split_data layout (same seed, same bytes).",
    )
    parser.add_argument("--preset", choices=tuple(PRESETS), default="teaching")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        required=True,
        help="output folder: new, empty, or an earlier simulated corpus holding nothing else (replaced whole)",
    )
    parser.add_argument("--subjects", type=int, dest="n_subjects", help="number of subjects (incl. held out)")
    parser.add_argument("--held-out", type=int, dest="n_held_out", help="subjects held out entirely")
    parser.add_argument("--stories", type=int, dest="n_stories", help="number of stimuli")
    parser.add_argument("--minutes", type=float, help="length of each stimulus in minutes")
    parser.add_argument("--stimuli", dest="stimuli_dir", help="a folder of audio files to use as stimuli")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="write the raw level instead: a BIDS dataset like SparrKULee's (BioSemi .bdf.gz at 1024 Hz with triggers, "
        "events.tsv, stimuli/eeg/*.npz.gz and their trigger files, the noise-free response under derivatives/)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_simulate)


def _run_simulate(args) -> int:
    from dmf2mel.data.corpus import simulate_corpus

    if args.raw:
        return _run_simulate_raw(args)

    out = simulate_corpus(
        args.out,
        preset=args.preset,
        seed=args.seed,
        n_subjects=args.n_subjects,
        n_held_out=args.n_held_out,
        n_stories=args.n_stories,
        minutes=args.minutes,
        stimuli_dir=args.stimuli_dir,
        progress=not args.quiet,
    )
    print(f"wrote the {args.preset} corpus (seed {args.seed}) to {out}")
    return 0


def _run_simulate_raw(args) -> int:
    from dmf2mel.data.simulate_raw import simulate_raw_corpus

    if args.stimuli_dir is not None or args.n_held_out is not None:
        raise UserError("simulate --raw: --stimuli and --held-out apply to the split_data corpus only")
    out = simulate_raw_corpus(
        args.out,
        preset=args.preset,
        seed=args.seed,
        n_subjects=args.n_subjects,
        n_stories=args.n_stories,
        minutes=args.minutes,
        progress=not args.quiet,
    )
    print(f"wrote the raw {args.preset} corpus (seed {args.seed}) as a BIDS dataset to {out}")
    return 0


def _add_inspect(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="summarise a split_data folder (subjects, stimuli, recordings, samples)",
        description="Validate and summarise a folder in the SparrKULee split_data layout.",
    )
    parser.add_argument("folder")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.set_defaults(func=_run_inspect)


def _run_inspect(args) -> int:
    from dmf2mel.data.sparrkulee import SplitData

    data = SplitData(args.folder)
    summary = data.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    hours = {split: n / 64 / 3600 for split, n in summary["samples"].items()}
    print(f"{data.folder}")
    print(f"  subjects   {len(summary['subjects'])}: {', '.join(summary['subjects'])}")
    print(f"  stimuli    {len(summary['stimuli'])}: {', '.join(summary['stimuli'])}")
    for split in summary["recordings"]:
        print(
            f"  {split:<5}      {summary['recordings'][split]} recordings, "
            f"{summary['samples'][split]} samples ({hours[split]:.2f} h at 64 Hz)"
        )
    print(f"  EEG channels {summary['eeg_channels']}, mel bands {summary['mel_bands']}")
    if data.held_out_subjects:
        print(f"  held out   {', '.join(data.held_out_subjects)}")
    if data.metadata:
        print(f"  corpus     preset {data.metadata.get('preset')}, seed {data.metadata.get('seed')}")
    return 0


def _add_split(subparsers) -> None:
    parser = subparsers.add_parser(
        "split",
        help="split the release's preprocessed level (derivatives/) into split_data, as the challenge does",
        description="Cut every recording of DERIVATIVES_DIR/preprocessed_eeg (with its envelope and mel from "
        "DERIVATIVES_DIR/preprocessed_stimuli) into train/val/test parts of 80/10/10 % and write them in the "
        "split_data layout, exactly as the challenge's split_and_normalize.py does (unnormalised; SplitData "
        "z-scores each recording with its train part when it reads).",
    )
    parser.add_argument(
        "derivatives", metavar="DERIVATIVES_DIR", help="folder with preprocessed_eeg/ and preprocessed_stimuli/"
    )
    parser.add_argument("--out", required=True, help="the split_data folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace files that already exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_split)


def _run_split(args) -> int:
    from dmf2mel.data.derivatives import split_derivatives

    written = split_derivatives(args.derivatives, args.out, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def _add_preprocess(subparsers) -> None:
    parser = subparsers.add_parser(
        "preprocess",
        help="preprocess the raw SparrKULee BIDS recordings into the derivatives level (with MWF)",
        description="Run the SparrKULee preprocessing on every BIDS_ROOT/sub-*/ses-*/eeg/*_eeg.bdf(.gz): 64 channels "
        "in microvolts, 0.5 Hz first-order zero-phase high-pass, artifact interpolation, alignment with the stimulus "
        "by its triggers, multichannel Wiener filter eye-artifact removal, common average reference, 64 Hz; and the "
        "mel and envelope of every stimulus at 64 Hz. Writes OUT/preprocessed_eeg and OUT/preprocessed_stimuli "
        "(then: python -m dmf2mel split OUT --out SPLIT_DIR). A recording that fails is reported and skipped; the "
        "command then exits with status 1.",
    )
    parser.add_argument("bids_root", metavar="BIDS_ROOT", help="root of the raw BIDS dataset (sub-*/, stimuli/)")
    parser.add_argument("--out", required=True, help="the derivatives folder to write")
    parser.add_argument(
        "--overwrite", action="store_true", help="redo recordings whose output exists (default: skip them)"
    )
    parser.add_argument("--no-mwf", dest="mwf", action="store_false", help="skip the MWF eye-artifact removal")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_preprocess)


def _run_preprocess(args) -> int:
    from tqdm.auto import tqdm

    from dmf2mel.data.raw import preprocess_bids

    result = preprocess_bids(
        args.bids_root,
        args.out,
        overwrite=args.overwrite,
        use_mwf=args.mwf,
        progress=not args.quiet,
        report=lambda line: tqdm.write(line, file=sys.stderr),
    )
    print(
        f"wrote {len(result.written)} files to {args.out}"
        + (
            f"; {len(result.skipped)} outputs already there were kept (--overwrite redoes them)"
            if result.skipped
            else ""
        )
    )
    if result.failed:
        print(f"error: {len(result.failed)} recording(s) failed (listed above) and were skipped", file=sys.stderr)
        return 1
    return 0


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train``."""
    parser = subparsers.add_parser(
        "train",
        help="train DMF2Mel or a baseline on a split_data folder",
        description="Train on the train parts of every training subject, select the best epoch on val, "
        "evaluate it on test at the end. RUN/ gets config.json, history.csv, last.pt, best.pt, metrics.json. "
        "Multi-GPU: torchrun --nproc_per_node N -m dmf2mel train ...",
    )
    parser.add_argument("--data", required=True, help="split_data folder")
    parser.add_argument("--run", required=True, help="run folder (new or empty; or an existing run with --resume)")
    parser.add_argument("--model", choices=model_names(), help="default: dmf2mel (on --resume: the run's)")
    parser.add_argument("--profile", choices=tuple(PROFILES), help="default: quick (on --resume: the run's)")
    parser.add_argument("--epochs", type=int, help="override the profile's number of epochs")
    parser.add_argument("--lr", type=float, help="override the profile's learning rate (on --resume: the run's)")
    parser.add_argument("--seed", type=int, help="default: 0 (on --resume: the run's)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run from its last.pt")
    parser.add_argument("--held-out", help="comma-separated subjects kept out of training (default: the corpus's)")
    parser.add_argument("--val-every", type=int, help="validate every N epochs")
    parser.add_argument("--patience", type=int, help="stop after N validations without improvement")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--no-test", dest="test", action="store_false", help="skip the final test evaluation")
    parser.add_argument("--quiet", action="store_true", help="log lines instead of progress bars")
    parser.set_defaults(func=_run_train)
    return parser


def _run_train(args) -> int:
    """``python -m dmf2mel train``."""
    summary = train(
        args.data,
        args.run,
        model=args.model,
        profile=args.profile,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        resume=args.resume,
        held_out=parse_subjects(args.held_out),
        quiet=args.quiet,
        val_every=args.val_every,
        patience=args.patience,
        workers=args.workers,
        test=args.test,
        lr=args.lr,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"{summary['run']}: {summary['epochs']} epochs, best val r {summary['best_val_r']:.4f} "
            f"at epoch {summary['best_epoch']} ({summary['seconds']:.0f} s)"
        )
        if summary["metrics"] is not None:
            print("test, best.pt:")
            for name in ("known", "unknown"):
                print(summary_line(name, summary["metrics"][name]))
    return 0


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evaluate``: score a run on the known- and unknown-subject protocols."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained run on known and unknown subjects (paper and challenge metrics, chance levels)",
        description="Evaluate RUN/best.pt on the test parts of the training subjects (known) and of the held-out "
        "subjects (unknown, with the unknown-subject conditioning); write RUN/metrics.json.",
    )
    parser.add_argument("--data", help="split_data folder (default: the one the run was trained on)")
    parser.add_argument("--run", required=True, help="the run folder")
    parser.add_argument("--held-out", help="comma-separated subjects for the unknown protocol (default: the run's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--n-null", type=int, default=N_NULL, help="null draws for the chance levels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the null distribution")
    parser.add_argument(
        "--non-finite",
        choices=NON_FINITE,
        default="raise",
        help="a prediction with NaN or infinite values: refuse to score (raise, the default), or score each window "
        "holding one as a failure, r = 0, and report how many (fail)",
    )
    parser.add_argument(
        "--out",
        help="write the scores to this file instead of RUN/metrics.json (which is never replaced by scores of fewer "
        "subjects than it holds)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the metrics file whatever it holds")
    parser.add_argument("--json", action="store_true", help='print one JSON object {"known": ..., "unknown": ...}')
    parser.set_defaults(func=_run_evaluate)
    return parser


def _run_evaluate(args) -> int:
    """``python -m dmf2mel evaluate``."""
    results = evaluate_run(
        args.run,
        args.data,
        parse_subjects(args.held_out),
        device=args.device,
        n_null=args.n_null,
        seed=args.seed,
        non_finite=args.non_finite,
        out=args.out,
        overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps({"known": results["known"], "unknown": results["unknown"]}))
    else:
        print(summary_line("known", results["known"]))
        print(summary_line("unknown", results["unknown"]))
        print(f"wrote {args.out or Path(args.run) / METRICS_FILE}")
    return 0


def add_predict_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``predict``: the challenge submission, one JSON per subject."""
    parser = subparsers.add_parser(
        "predict",
        help="predict the mel of the challenge test segments (TASK2_regression, or one subject's two files)",
        description="Write OUT/sub-XXX.json = {segment_id: mel (time x 10)} with RUN/best.pt, for every subject of "
        "the challenge test set (--test-folder TASK2_regression: sub-XXX_mapping.json with "
        "preprocessed_eeg/sub-XXX_eeg.npz) or for one subject (--eeg and --mapping). The subject id comes from "
        "the mapping file's name; a subject the run was not trained on is decoded as an unknown subject.",
    )
    parser.add_argument("--run", required=True, help="the run folder")
    parser.add_argument("--test-folder", help="the challenge's TASK2_regression folder (every subject in it)")
    parser.add_argument("--eeg", help="one subject: sub-XXX_eeg.npz of EEG segments")
    parser.add_argument("--mapping", help="one subject: sub-XXX_mapping.json")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace submissions that already exist there")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.set_defaults(func=_run_predict)
    return parser


def _run_predict(args) -> int:
    """``python -m dmf2mel predict``."""
    single = args.eeg is not None or args.mapping is not None
    if (args.test_folder is None) == (not single) or (single and (args.eeg is None or args.mapping is None)):
        raise UserError("predict: give either --test-folder TASK2_DIR, or both --eeg and --mapping (one subject)")
    read_config(args.run)  # a missing run is the first thing to report
    if args.test_folder is not None:
        subjects = find_challenge_subjects(args.test_folder)
    else:
        subjects = [challenge_files(args.eeg, args.mapping)]
    for result in predict_subjects(args.run, subjects, args.out, device=args.device, overwrite=args.overwrite):
        note = (
            ""
            if result.known
            else f" ({result.subject} is not a training subject of the run: decoded as an unknown subject)"
        )
        print(f"wrote {result.path}: {result.n_segments} segments{note}")
    return 0


def add_match_mismatch_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``match-mismatch``: score a run on the challenges' task 1, or decide the release's task-1 trials."""
    parser = subparsers.add_parser(
        "match-mismatch",
        help="score a run on match-mismatch (pick the heard speech segment), or decide the release's task-1 trials",
        description="Cut the test parts of a split_data folder into segments; for each, the run reconstructs the mel "
        "from the EEG segment alone and picks the candidate stimulus segment it correlates with best. Protocol 2024: "
        "5 s, the matched segment and 4 mismatched ones drawn from the same story (chance 20 %%); 2023: 3 s, the "
        "matched one and the one starting 1 s after it (chance 50 %%). Prints the accuracy with its exact 95 %% "
        "binomial interval, for known and unknown subjects. With --test-folder (the release's TASK1_match_mismatch) "
        "it writes OUT/sub-XXX.json = {segment_id: chosen candidate} instead.",
    )
    parser.add_argument("--run", required=True, help="a run folder of python -m dmf2mel train")
    parser.add_argument("--data", help="split_data folder (default: the one the run was trained on)")
    parser.add_argument("--protocol", default="2024", help="2024 (5 candidates, 5 s) or 2023 (2 candidates, 3 s)")
    parser.add_argument("--segment", type=float, help="segment length in seconds (default: the protocol's)")
    parser.add_argument("--lengths", help="comma-separated segment lengths in seconds to score as well, e.g. 1,2,5,10")
    parser.add_argument("--split", default="test", help="which parts to cut the trials from (default: test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mismatched candidates and their positions")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--test-folder", help="the release's TASK1_match_mismatch folder: write decisions to --out")
    parser.add_argument("--out", help="output folder for --test-folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run_match_mismatch)
    return parser


def _parse_lengths(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        lengths = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise UserError(f"--lengths must be comma-separated seconds such as 1,2,5, got {text!r}") from None
    if not lengths or min(lengths) <= 0:
        raise UserError(f"--lengths must be positive seconds such as 1,2,5, got {text!r}")
    return lengths


def _run_match_mismatch(args) -> int:
    """``python -m dmf2mel match-mismatch``."""
    from dmf2mel import match_mismatch

    read_config(args.run)  # a missing run is the first thing to report
    if args.test_folder is not None:
        if args.out is None:
            raise UserError("match-mismatch: --test-folder needs --out, the folder for the decisions")
        for path in match_mismatch.predict_challenge(args.run, args.test_folder, args.out, device=args.device):
            print(f"wrote {path}")
        return 0
    if args.out is not None:
        raise UserError("match-mismatch: --out goes with --test-folder (the release's task-1 trials)")
    proto = match_mismatch.protocol(args.protocol)
    if args.segment is not None:
        if args.segment <= 0:
            raise UserError(f"--segment must be a positive number of seconds, got {args.segment}")
        proto = proto.with_segment(args.segment)
    results = match_mismatch.evaluate_run(
        args.run, args.data, proto, _parse_lengths(args.lengths), args.split, args.seed, args.device
    )
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"protocol {proto.name}: {proto.segment_s:g} s segments, {proto.n_candidates} candidates")
    for name in ("known", "unknown"):
        print(match_mismatch.summary_line(name, results[name]))
    for seconds, result in results["by_length"].items():
        print(match_mismatch.summary_line(f"{float(seconds):g} s", result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dmf2mel",
        description="DMF2Mel: reconstruct the mel spectrogram of heard speech from EEG.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_simulate(subparsers)
    _add_inspect(subparsers)
    _add_split(subparsers)
    _add_preprocess(subparsers)
    add_train_parser(subparsers)
    add_evaluate_parser(subparsers)
    add_predict_parser(subparsers)
    add_match_mismatch_parser(subparsers)
    return parser


#: Errors of the machine rather than of the program: no permission, a read-only or full disk.
_ENVIRONMENT_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)

#: Python parameters whose flag has another name than the argparse destination.
_PARAMETER_FLAGS = {"out_dir": "--out", "data_folder": "--data"}


def _flags(parser: argparse.ArgumentParser, command: str) -> tuple[dict[str, str], set[str]]:
    """The flags of ``command`` by Python parameter name, and the names of its on/off flags."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags, switches = dict(_PARAMETER_FLAGS), set()
    for action in subparsers.choices[command]._actions:
        long_names = [name for name in action.option_strings if name.startswith("--") and name != "--help"]
        if long_names:
            flags[action.dest] = long_names[0]
            if action.nargs == 0:
                switches.add(action.dest)
    return flags, switches


def error_message(error: UserError, flags: dict[str, str], switches: set[str] = frozenset()) -> str:
    """``error``'s message with the Python names of arguments replaced by the command's flags.

    ``"n_held_out must be ..."`` -> ``"--held-out must be ..."`` (the parameter the error names, at the start of
    its message); ``"resume=True continues it"`` -> ``"--resume continues it"`` (on/off flags anywhere).
    """
    message = str(error)
    name = error.parameter
    if name in flags and message.startswith(name) and not message[len(name) :][:1].isidentifier():
        message = flags[name] + message[len(name) :]
    for dest in switches:
        message = message.replace(f"{dest}=True", flags[dest])
    for dest, flag in flags.items():
        message = message.replace(f" {dest}=FILE", f" {flag} FILE")
    return message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command != "inspect":
            threads.configure()  # the cores other programs leave free (dmf2mel.threads)
        return args.func(args)
    except UserError as err:
        print(f"error: {error_message(err, *_flags(parser, args.command))}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in _ENVIRONMENT_ERRORS:
            raise  # anything else is a bug: keep its traceback
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: {err.strerror}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
