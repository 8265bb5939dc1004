"""Preemption: SIGTERM saves a checkpoint at the step reached and exits 143; a run
killed with SIGKILL and restarted with the same command ends like an uninterrupted
one."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from kaleido_tf.cli.main import main
from kaleido_tf.training.trainer import PREEMPTED_EXIT, read_history
from tests.conftest import TINY_MODEL

REPO = Path(__file__).resolve().parents[3]
STEPS = 24
SETTINGS = TINY_MODEL + [
    "train.global_batch_size=8",
    f"train.max_steps={STEPS}",
    "train.checkpoint_every_steps=2",
    "train.log_every_steps=1",
    "train.optimizer.warmup_steps=2",
    "train.optimizer.learning_rate=1e-3",
]


def argv(command, data, model_dir, settings=SETTINGS, extra=()):
    out = [command, *extra]
    for s in settings:
        out += ["--set", s]
    return out + ["--data", str(data), "--model-dir", str(model_dir), "--quiet"]


def checkpoints(model_dir):
    return sorted(
        int(p.name[len("ckpt-") : -len(".index")])
        for p in (Path(model_dir) / "checkpoints").glob("ckpt-*.index")
    )


def wait_for_checkpoint(model_dir, after, proc=None, timeout=180):
    """Polls until a checkpoint later than step ``after`` exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(step > after for step in checkpoints(model_dir)):
            return
        assert proc is None or proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint after step {after} in {timeout} s")


def start(data, model_dir):
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "kaleido_tf.cli.main"]
        + argv("pretrain", data, model_dir, extra=("--config", "kaleido_bert/demo")),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def weights(model_dir, step):
    reader = tf.train.load_checkpoint(
        str(Path(model_dir) / "checkpoints" / f"ckpt-{step}")
    )
    names = [n for n in reader.get_variable_to_shape_map() if "/.ATTRIBUTES/" in n]
    return {n: reader.get_tensor(n) for n in names if "save_counter" not in n}


def test_sigterm_then_sigkill_then_resume_equals_an_uninterrupted_run(
    synthetic_prepared, tmp_path, capsys
):
    data = synthetic_prepared["train"]
    run = tmp_path / "preempted"
    rng = np.random.default_rng(0)
    proc = None
    try:
        # 1. SIGTERM at a random point after the first checkpoint.
        proc = start(data, run)
        wait_for_checkpoint(run, 0, proc)
        time.sleep(rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == PREEMPTED_EXIT, err[-3000:]
        reached = read_history(run)[-1]["step"]
        assert 2 <= reached < STEPS, "stopped too late: the test proves nothing"
        assert checkpoints(run)[-1] == reached  # saved at the step reached
        assert f"stopped by SIGTERM at step {reached}" in err

        # 2. The same command, SIGKILLed after its next checkpoint.
        proc = start(data, run)
        wait_for_checkpoint(run, reached + 1, proc)
        time.sleep(rng.uniform(0, 0.3))
        proc.kill()
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert checkpoints(run)[-1] < STEPS

    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    # 3. The same command again (in this process) runs to the end.
    demo = ("--config", "kaleido_bert/demo")
    killed_at = checkpoints(run)[-1]
    assert main(argv("pretrain", data, run, extra=demo)) == 0
    assert f"resumed from {run / 'checkpoints' / f'ckpt-{killed_at}'}" in (
        capsys.readouterr().err
    )
    steps = [row["step"] for row in read_history(run)]
    assert steps == list(range(1, STEPS + 1))  # no step lost or logged twice

    uninterrupted = tmp_path / "uninterrupted"
    assert main(argv("pretrain", data, uninterrupted, extra=demo)) == 0
    a, b = weights(run, STEPS), weights(uninterrupted, STEPS)
    assert a.keys() == b.keys() and len(a) > 20
    # Same seeds, no dropout, the exact data position on resume: float32 CPU
    # arithmetic gives the same weights up to summation-order noise.
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_sigterm_during_finetune_saves_the_step_reached(synthetic_prepared, tmp_path):
    # In-process: a thread sends SIGTERM to this process once the first
    # checkpoint exists (fit's handler is installed then, and 10,000 steps
    # cannot finish before it arrives).
    run = tmp_path / "finetune"
    settings = TINY_MODEL + [
        "model.patch_feature_dim=576",
        "model.encoder.vocab_size=1000",
        "train.global_batch_size=8",
        "train.max_steps=10000",
        "train.checkpoint_every_steps=2",
        "train.log_every_steps=1",
    ]

    def preempt():
        wait_for_checkpoint(run, 0)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=preempt, daemon=True)
    thread.start()
    rc = main(
        argv(
            "finetune",
            synthetic_prepared["train"],
            run,
            settings,
            ("--task", "category", "--config", "kaleido_bert/finetune_category"),
        )
    )
    thread.join(timeout=10)
    assert rc == PREEMPTED_EXIT
    reached = read_history(run)[-1]["step"]
    assert 2 <= reached < 10000
    assert checkpoints(run)[-1] == reached
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
