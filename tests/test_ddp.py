"""DistributedDataParallel on CPU: two gloo processes launched by torchrun train one run."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import train_fixtures as tf
from dmf2mel.checkpoint import load_checkpoint, read_history

TESTS = Path(__file__).parent

SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    import train_fixtures as tf
    tf.register()
    from dmf2mel.train import train
    summary = train({corpus!r}, {run!r}, model="tiny", profile="tiny", epochs=2, device="cpu", quiet=True, n_null=100)
    # one file per rank: the two processes share torchrun's stdout, where their prints can interleave
    with open(os.path.join({out!r}, "rank" + os.environ["RANK"]), "w") as fh:
        fh.write("done " + str(summary["epochs"]))
    """
)


@pytest.mark.slow
def test_two_cpu_processes_train_one_run(tmp_path):
    corpus = tf.make_corpus(tmp_path / "split_data")
    run = tmp_path / "run"
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), corpus=str(corpus), run=str(run), out=str(tmp_path)))
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(tmp_path / f"rank{rank}").read_text() for rank in (0, 1)] == ["done 2", "done 2"]

    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "history.csv", "last.pt", "metrics.json"]
    last = load_checkpoint(run / "last.pt")
    assert last["epoch"] == 2
    assert len(last["rng"]) == 2  # each process's RNG state, for resume
    # the two processes drew different dropout masks, so their torch RNG states differ
    assert not (last["rng"][0]["torch"] == last["rng"][1]["torch"]).all()
    history = read_history(run)
    assert [int(r["epoch"]) for r in history] == [1, 2]  # one row per epoch: only rank 0 writes
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["known"]["paper_r"] > metrics["known"]["chance_r"]
