"""Multi-stage pretraining: weights carried over, optimizer and schedule reset, each
stage's checkpoints kept, finished stages skipped, SIGTERM mid-stage and resume."""

import contextlib
import io
import os
import signal
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.cli.main import main
from kaleido_tf.errors import ConfigError
from kaleido_tf.training.multi_stage import read_stages, run_stages
from kaleido_tf.training.trainer import PREEMPTED_EXIT, read_history
from tests.conftest import TINY_MODEL

LR, LR_2, STEPS_1, STEPS_2 = 1e-3, 5e-4, 3, 12
BETA_1, BETA_2 = 0.9, 0.999  # OptimizerConfig defaults
# MLM and ITM only: a smaller graph to trace, the same training loop.
SETTINGS = TINY_MODEL + [
    f"tasks.{t}=false" for t in ("rr", "jps", "cp", "g2cm", "b2cm")
]
SETTINGS += [
    "train.global_batch_size=8",
    "train.checkpoint_every_steps=1",
    "train.keep_checkpoints=100",
    "train.log_every_steps=1",
    "train.optimizer.warmup_steps=1",
    f"train.optimizer.learning_rate={LR}",
]
# Stage 1 on the train split, stage 2 on the validation split (same vocabulary),
# with its own learning rate.
STAGES = (
    f"train.stages=[{{name: out, data: a, max_steps: {STEPS_1}}}, {{name: in, "
    f"data: b, max_steps: {STEPS_2}, learning_rate: {LR_2}}}]"
)


def config(stages=STAGES):
    return kaleido_tf.load_config("kaleido_bert/demo", SETTINGS + [stages])


def folders(prepared):
    return {"a": prepared["train"], "b": prepared["validation"]}


def command(prepared, run):
    argv = ["pretrain", "--config", "kaleido_bert/demo", "--quiet"]
    for s in SETTINGS + [STAGES]:
        argv += ["--set", s]
    argv += ["--model-dir", str(run)]
    for key, folder in folders(prepared).items():
        argv += ["--stage-data", f"{key}={folder}"]
    return argv


def checkpoint_values(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {
        n: reader.get_tensor(n)
        for n in reader.get_variable_to_shape_map()
        if "/.ATTRIBUTES/" in n and "save_counter" not in n
    }


def call(argv):
    """``main(argv)`` -> (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_prepared):
    """``kaleido-tf pretrain`` with two stages, SIGTERMed in stage 2 once it saved
    a checkpoint, then the same command again (in this process)."""
    root = tmp_path_factory.mktemp("multi") / "run"
    stage_2 = root / "stage_2_in" / "checkpoints"
    argv = command(synthetic_prepared, root)

    def preempt():
        deadline = time.monotonic() + 300
        while not list(stage_2.glob("ckpt-*.index")) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=preempt, daemon=True)
    thread.start()
    first = call(argv)
    thread.join(timeout=10)
    record = read_stages(root)
    second = call(argv)
    return {"dir": root, "first": first, "record": record, "second": second}


def test_sigterm_in_stage_two_exits_143_and_the_same_command_resumes(run):
    status, _, err = run["first"]
    assert status == PREEMPTED_EXIT, err[-3000:]
    rows = run["record"]["stages"]
    assert [r["status"] for r in rows] == ["done", "running"]
    reached = rows[1]["step"]
    assert 1 <= reached < STEPS_2, "stopped too late: the test proves nothing"
    stage_2 = run["dir"] / "stage_2_in" / "checkpoints"
    assert f"stopped by SIGTERM at step {reached}" in err
    assert rows[1]["checkpoint"] == os.path.join(
        "stage_2_in", "checkpoints", f"ckpt-{reached}"
    )

    status, out, err = run["second"]
    assert status == 0, err[-3000:]
    assert f"stage 1/2 out: done at step {STEPS_1}" in err and "skipped" in err
    assert f"resumed from {stage_2 / f'ckpt-{reached}'}" in err
    assert f"stage_2_in: done at step {STEPS_2}" in out
    # No step lost or logged twice; every stage keeps its own checkpoints.
    assert [r["step"] for r in read_history(stage_2.parent)] == list(
        range(1, STEPS_2 + 1)
    )
    for name, steps in (("stage_1_out", STEPS_1), ("stage_2_in", STEPS_2)):
        folder = run["dir"] / name
        assert (folder / "checkpoints" / f"ckpt-{steps}.index").is_file()
        assert (folder / "config.yaml").is_file()
        assert (folder / "loss_curves.png").is_file()
    rows = read_stages(run["dir"])["stages"]
    assert [(r["status"], r["step"]) for r in rows] == [
        ("done", STEPS_1),
        ("done", STEPS_2),
    ]


def test_stage_two_starts_from_stage_one_weights_with_a_fresh_optimizer(run):
    folder = run["dir"]
    final_1 = checkpoint_values(folder / "stage_1_out" / "checkpoints" / "ckpt-3")
    first_2 = checkpoint_values(folder / "stage_2_in" / "checkpoints" / "ckpt-1")
    assert final_1.keys() == first_2.keys() and len(final_1) > 20
    weights = [n for n in final_1 if "OPTIMIZER_SLOT" not in n and "optimizer" != n[:9]]
    # A fresh schedule: stage 2's first step is at the warm-up start (0), so its
    # weights after one step are stage 1's final weights, unchanged, though the
    # step computed non-zero moments.
    for name in weights:
        np.testing.assert_array_equal(first_2[name], final_1[name], err_msg=name)
    # A fresh optimizer: step 1 of its own, and moments grown from zero by one
    # step, m = (1 - b1) g and v = (1 - b2) g^2, so v = (1 - b2) / (1 - b1)^2 m^2.
    # Stage 1's moments, carried over, would break this.
    assert first_2["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"] == 1
    assert final_1["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"] == STEPS_1
    ms = [n for n in first_2 if n.endswith("/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE")]
    assert len(ms) > 10
    assert any(np.abs(first_2[m]).max() > 0 for m in ms)

    def one_step_moments(values, m):
        v = m.replace("/optimizer/m/", "/optimizer/v/")
        ratio = (1 - BETA_2) / (1 - BETA_1) ** 2
        return np.allclose(values[v], ratio * values[m] ** 2, rtol=1e-4, atol=1e-30)

    assert all(one_step_moments(first_2, m) for m in ms)
    assert not all(one_step_moments(final_1, m) for m in ms)  # 3 steps: no
    # The schedule restarts over stage 2's own steps with its learning rate:
    # 0 during the 1-step warm-up, then LR_2 * (1 - s / STEPS_2).
    lr = {r["step"]: r["lr"] for r in read_history(folder / "stage_2_in")}
    want = {1: 0.0, 2: LR_2 * (1 - 1 / STEPS_2), STEPS_2: LR_2 / STEPS_2}
    np.testing.assert_allclose([lr[s] for s in want], list(want.values()), rtol=1e-5)
    lr_1 = {r["step"]: r["lr"] for r in read_history(folder / "stage_1_out")}
    np.testing.assert_allclose(lr_1[2], LR * (1 - 1 / STEPS_1), rtol=1e-5)
    assert read_stages(folder)["stages"][1]["initialised_from"] == os.path.join(
        "stage_1_out", "checkpoints", f"ckpt-{STEPS_1}"
    )


def test_a_rerun_of_a_finished_run_trains_nothing(run, synthetic_prepared):
    folder = run["dir"]
    files = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    status, out, err = call(command(synthetic_prepared, folder))
    assert status == 0, err[-3000:]
    assert err.count("skipped") == 2 and "resumed" not in err
    for p, mtime in files.items():
        if p.name != "stages.json":
            assert p.stat().st_mtime_ns == mtime, p
    assert {p for p in folder.rglob("*") if p.is_file()} == set(files)


def test_changed_stage_lists_and_bad_stage_settings_are_refused(
    run, synthetic_prepared, tmp_path
):
    folder, data = run["dir"], folders(synthetic_prepared)
    longer = STAGES.replace(f"max_steps: {STEPS_2}", f"max_steps: {STEPS_2 + 1}")
    fewer = f"train.stages=[{{name: out, data: a, max_steps: {STEPS_1}}}]"
    for stages, which in ((longer, "stage 2"), (fewer, "stage 2")):
        with pytest.raises(ConfigError, match=f"records {which} .*cannot change"):
            run_stages(config(stages), folder, stage_data=data)
    with pytest.raises(ConfigError, match="no stage reads data 'c'"):
        run_stages(config(), folder, stage_data={**data, "c": data["a"]})
    with pytest.raises(ConfigError, match="--stage-data b=DIR"):
        run_stages(config(), tmp_path / "new", stage_data={"a": data["a"]})
    assert not (tmp_path / "new" / "stages.json").exists()
    bad = {
        "[{name: x, data: a, max_steps: 2}, {name: x, data: b, max_steps: 2}]": (
            "unique"
        ),
        "[{name: x, data: a}]": "exactly one of epochs and max_steps",
        "[{name: x, data: a, epochs: 1, max_steps: 2}]": "exactly one",
        "[{name: 'a/b', data: a, max_steps: 2}]": "names the stage's folder",
        "[{name: x, data: a, max_step: 2}]": "unknown key",
        "[{name: x, max_steps: 2, warmup_steps: 1, warmup_fraction: 0.1}]": "only one",
    }
    for stages, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            config(f"train.stages={stages}")
    # Without stages, --data is still required and --stage-data is refused.
    plain = ["pretrain", "--config", "kaleido_bert/demo", "--model-dir", str(tmp_path)]
    status, _, err = call(plain)
    assert status == 2 and "--data is required" in err
    status, _, err = call(plain + ["--data", str(data["a"]), "--stage-data", "a=x"])
    assert status == 2 and "has no train.stages" in err


def test_the_run_root_stands_for_its_last_stage(run):
    # Evaluation, export and `finetune --init-from` take the run root of a
    # multi-stage run and get the last stage's newest checkpoint.
    from kaleido_tf.checkpoints.trained_model import (
        final_stage_dir,
        latest_checkpoint,
        load_trained_model,
    )

    root = run["dir"]
    last = root / "stage_2_in"
    assert final_stage_dir(root) == last
    assert latest_checkpoint(root) == latest_checkpoint(last)
    trained = load_trained_model(root)
    assert trained.checkpoint == latest_checkpoint(last)
    assert trained.config.train.stages == ()
    saved = list(checkpoint_values(trained.checkpoint).values())
    for variable in trained.model.trainable_variables:  # each restored exactly
        value = variable.numpy()
        assert any(
            v.shape == value.shape and np.array_equal(v, value) for v in saved
        ), variable.name
