"""Two worker processes on 127.0.0.1 (TF_CONFIG, MultiWorkerMirroredStrategy) train
in lock-step and equal one process on the same global batch; only the chief writes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kaleido_tf.cli.main import main
from kaleido_tf.training.trainer import read_history
from tests.conftest import TINY_MODEL

REPO = Path(__file__).resolve().parents[3]
SETTINGS = TINY_MODEL + [
    "train.global_batch_size=8",
    "train.max_steps=4",
    "train.checkpoint_every_steps=2",
    "train.log_every_steps=1",
    "train.optimizer.warmup_steps=2",
    "train.optimizer.learning_rate=1e-3",
]
# Float32 sums in another order (two replicas' gradients all-reduced vs one
# replica's), four AdamW steps. Measured: losses 1.1e-6 relative, weights and
# optimizer slots 8e-9 absolute (before the gradients were made dense for the
# clip's global norm, the slots differed by 0.2% and this test failed).
RTOL, ATOL = 1e-5, 1e-6


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def pretrain_argv(data, model_dir):
    argv = ["pretrain", "--config", "kaleido_bert/demo"]
    for s in SETTINGS:
        argv += ["--set", s]
    return argv + ["--data", str(data), "--model-dir", str(model_dir), "--quiet"]


def worker_env(workers, index):
    env = {
        k: v for k, v in os.environ.items() if "proxy" not in k.lower()
    }  # gRPC must not route 127.0.0.1 through a proxy
    env.update(
        PYTHONPATH=str(REPO),
        CUDA_VISIBLE_DEVICES="",
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        ),
    )
    return env


def logged_rows(stderr):
    """The ``step N: {...}`` lines a worker logs when no progress bar shows."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("step ") and ": {" in line:
            head, logs = line.split(": ", 1)
            rows.append({"step": int(head.split()[1]), **json.loads(logs)})
    return rows


def checkpoint_values(path):
    reader = tf.train.load_checkpoint(path)
    names = [n for n in reader.get_variable_to_shape_map() if "/.ATTRIBUTES/" in n]
    return {n: reader.get_tensor(n) for n in names if "save_counter" not in n}


@pytest.mark.multi_device
def test_two_workers_train_in_lock_step_like_one_process(synthetic_prepared, tmp_path):
    data = synthetic_prepared["train"]
    run_dir = tmp_path / "two_workers"
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    try:
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "kaleido_tf.cli.main"]
                    + pretrain_argv(data, run_dir),
                    cwd=REPO,
                    env=worker_env(workers, i),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:  # both killed whatever happened
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out[-2000:] + err[-4000:]

    # Lock-step: both workers log the same per-step losses (the metrics are
    # reduced over all replicas), and the chief's history is one of them.
    chief_rows, other_rows = (logged_rows(err) for _, err in outputs)
    assert [r["step"] for r in chief_rows] == [1, 2, 3, 4]
    assert other_rows == chief_rows
    history = read_history(run_dir)
    assert [{k: v for k, v in r.items() if k != "epoch"} for r in history] == (
        chief_rows
    )

    # Only the chief wrote the model directory: one set of checkpoints, records.
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.index")) == [
        "ckpt-2.index",
        "ckpt-4.index",
    ]
    assert "resumed" not in outputs[1][1]
    assert not list(Path(tempfile_root()).glob("kaleido_tf_worker_*"))

    # One process with one replica on the same global batch of 8.
    single_dir = tmp_path / "one_process"
    assert main(pretrain_argv(data, single_dir)) == 0
    single = read_history(single_dir)
    assert [r["step"] for r in single] == [1, 2, 3, 4]
    for a, b in zip(history, single):
        for key in b:
            np.testing.assert_allclose(
                a[key], b[key], rtol=RTOL, atol=ATOL, err_msg=key
            )
    two = checkpoint_values(str(run_dir / "checkpoints" / "ckpt-4"))
    one = checkpoint_values(str(single_dir / "checkpoints" / "ckpt-4"))
    assert two.keys() == one.keys() and len(one) > 20
    for name in one:
        np.testing.assert_allclose(
            two[name], one[name], rtol=RTOL, atol=ATOL, err_msg=name
        )


def tempfile_root():
    import tempfile

    return tempfile.gettempdir()


def test_run_pretrain_sh_sets_tf_config_for_a_two_node_launch(tmp_path):
    fake = tmp_path / "bin" / "kaleido-tf"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$TF_CONFIG" "$*"\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}")
    env.pop("TF_CONFIG", None)
    out = subprocess.run(
        ["bash", str(REPO / "run_pretrain.sh"), "--workers", "n1:12345,n2:12345"]
        + ["--index", "1", "kaleido_bert/pretrain", "data", "runs", "bert"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert json.loads(out[0]) == {
        "cluster": {"worker": ["n1:12345", "n2:12345"]},
        "task": {"type": "worker", "index": 1},
    }
    assert out[1] == (
        "pretrain --config kaleido_bert/pretrain --data data --model-dir runs "
        "--init-from bert"
    )
