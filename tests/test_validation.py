"""Checks at the boundary: builtin exception types, the parameter named, what is allowed and what was received;
the command line speaks of its flags instead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import train_fixtures as tf
from dmf2mel import validation
from dmf2mel.cli import error_message, main
from dmf2mel.data import corpus, simulation_params
from dmf2mel.errors import DataError, TrainingFailed, UserError, UserTypeError
from dmf2mel.models import DMF2MelConfig
from dmf2mel.models.attention import SplineMapAttention
from dmf2mel.models.dcfam import DCFAM
from dmf2mel.train import train


def test_every_user_error_is_a_builtin_value_error():
    for error in (UserError, UserTypeError, DataError, TrainingFailed):
        assert issubclass(error, ValueError)
    assert issubclass(UserTypeError, TypeError) and issubclass(TrainingFailed, RuntimeError)
    with pytest.raises(ValueError, match="profile must be one of 'quick', 'paper'.*; got 'fast'"):
        train("nowhere", "nowhere", profile="fast")


def test_check_option_names_the_parameter_the_choices_and_the_value():
    assert validation.check_option("profile", "quick", ("quick", "paper")) == "quick"
    with pytest.raises(UserError, match=r"^profile must be one of 'quick', 'paper'; got 'fast'$") as info:
        validation.check_option("profile", "fast", ("quick", "paper"))
    assert info.value.parameter == "profile"


def test_check_type_and_check_int():
    assert validation.check_type(3, int, "n") == 3
    with pytest.raises(TypeError, match=r"^n must be int or float; got str '3'$"):
        validation.check_type("3", (int, float), "n")
    assert validation.check_int("seed", np.int64(4), minimum=0) == 4
    for bad in (True, 1.5, "2"):
        with pytest.raises(UserTypeError, match="seed must be an integer; got"):
            validation.check_int("seed", bad)
    with pytest.raises(UserError, match=r"^seed must be an integer >= 0; got -1$"):
        validation.check_int("seed", -1, minimum=0)


def test_check_folder(tmp_path):
    assert validation.check_folder("out", tmp_path / "new") == tmp_path / "new"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="out: .*file exists and is not a folder"):
        validation.check_folder("out", tmp_path / "file")


def test_heads_must_divide_the_width_in_every_module_alike():
    for build, owner in (
        (lambda: SplineMapAttention(d_model=64, n_heads=3), "SplineMapAttention"),
        (lambda: DCFAM(d_model=64, n_heads=3), "DCFAM"),
        (lambda: DMF2MelConfig(d_model=64, n_heads=3), "DMF2MelConfig"),
    ):
        with pytest.raises(UserError, match=f"^{owner}: n_heads=3 must divide d_model=64$"):
            build()


def test_check_eeg():
    eeg = torch.zeros(2, 5, 4)
    assert validation.check_eeg(eeg, 4, "M") is eeg
    for bad, message in (
        (np.zeros((2, 5, 4)), "torch.Tensor"),
        (torch.zeros(2, 5, 3), r"\(batch, time, 4\)"),
        (torch.zeros(2, 5, 4, dtype=torch.long), "floating-point"),
        (torch.zeros(2, 0, 4), "at least one time step"),
    ):
        with pytest.raises(DataError, match=f"M: eeg must .*{message}"):
            validation.check_eeg(bad, 4, "M")


def test_the_library_names_python_arguments(tmp_path):
    with pytest.raises(UserError, match="n_held_out must be between") as info:
        simulation_params.preset_params("teaching", n_subjects=2, n_held_out=2)
    assert info.value.parameter == "n_held_out"
    with pytest.raises(UserError, match="^seed must be an integer >= 0; got -1$"):
        corpus.simulate_corpus(tmp_path / "x", seed=-1, progress=False)


def test_error_message_maps_parameters_to_flags():
    flags = {"n_held_out": "--held-out", "resume": "--resume", "run": "--run", "seed": "--seed"}
    convert = lambda error: error_message(error, flags, {"resume"})  # noqa: E731
    assert (
        convert(UserError("n_held_out must be between 0 and 3, got 4", "n_held_out"))
        == "--held-out must be between 0 and 3, got 4"
    )
    assert (
        convert(UserError("run: /x exists and is not empty; resume=True continues that run", "run"))
        == "--run: /x exists and is not empty; --resume continues that run"
    )
    assert convert(UserError("seeds: other", "seed")) == "seeds: other"  # a longer word is left alone
    assert convert(DataError("/data/x.npy: 63 channels")) == "/data/x.npy: 63 channels"


def test_the_command_line_speaks_of_its_flags(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "x"), "--seed", "-1", "--quiet"]) == 2
    assert capsys.readouterr().err == "error: --seed must be an integer >= 0; got -1\n"
    assert main(["simulate", "--out", str(tmp_path / "x"), "--subjects", "2", "--held-out", "2", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: --held-out must be between 0 and")
    corpus = tf.make_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    run.mkdir()
    (run / "mine.txt").write_text("keep")
    assert main(["train", "--data", str(corpus), "--run", str(run), "--model", "linear", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --run: {run} exists and is not empty; --resume continues that run")
    assert main(["train", "--data", str(corpus), "--run", str(tmp_path / "new"), "--held-out", "sub-099"]) == 2
    assert capsys.readouterr().err.startswith("error: --held-out: sub-099 not in")
