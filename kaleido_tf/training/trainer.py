"""The training loop shared by every system (STYLE §2.4).

One replica step: call the model, compute each named loss term, reduce each by its
global denominator (``losses/reduction.py``), take the weighted sum, all-reduce the
gradients, clip their global norm, apply AdamW. Around it: MirroredStrategy (or
MultiWorkerMirroredStrategy), checkpoints every N steps with automatic resume at the
exact data position (the input pipeline is deterministic per (seed, epoch)), per-task
losses and the learning rate to TensorBoard, a Keras progress bar, run records, and a
loss-curve picture at the end.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import tensorflow as tf
import tf_keras

import kaleido_tf
from kaleido_tf.config.experiment import ExperimentConfig
from kaleido_tf.config.loader import config_to_dict
from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.losses.reduction import weighted_mean
from kaleido_tf.manifest import read_manifest
from kaleido_tf.systems import get_recipe
from kaleido_tf.training.optimizer import build_optimizer

CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.jsonl"


@dataclasses.dataclass
class TrainPlan:
    """Step arithmetic of a run.

    Attributes:
        steps_per_epoch: Global steps in one pass over the examples.
        total_steps: Steps of the whole run.
        examples_per_epoch: Examples (pairs) per epoch.
    """

    steps_per_epoch: int
    total_steps: int
    examples_per_epoch: int


def plan(config: ExperimentConfig, data_dir: Path) -> TrainPlan:
    """Steps per epoch and in total; refuses a batch larger than the data."""
    examples = get_recipe(config).examples_per_epoch(data_dir, config)
    per_epoch = examples // config.train.global_batch_size
    if per_epoch < 1:
        raise ConfigError(
            f"train.global_batch_size {config.train.global_batch_size} exceeds the "
            f"{examples} examples per epoch of the data: lower it"
        )
    total = config.train.max_steps or config.train.epochs * per_epoch
    return TrainPlan(per_epoch, int(total), examples)


def check_data(config: ExperimentConfig, data_dir: Path) -> dict:
    """The data's manifest, checked against the model config."""
    manifest = read_manifest(
        data_dir, layout=config.model.layout, feature_dim=config.model.patch_feature_dim
    )
    enc = config.model.encoder
    if manifest["max_seq_length"] > enc.max_sequence_length:
        raise DataError(
            f"{data_dir}: text length {manifest['max_seq_length']} exceeds "
            f"model.encoder.max_sequence_length {enc.max_sequence_length}"
        )
    if manifest["vocab_size"] > enc.vocab_size:
        raise DataError(
            f"{data_dir}: vocab.txt has {manifest['vocab_size']} tokens but "
            f"model.encoder.vocab_size is {enc.vocab_size}: the ids would not fit"
        )
    return manifest


def write_run_records(model_dir: Path, config: ExperimentConfig, argv, model) -> None:
    """config.yaml, argv.txt, versions.json and model_config.json (STYLE §2.6)."""
    import yaml

    from kaleido_tf.atomic_files import atomic_write_json, atomic_write_text

    model_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        model_dir / "config.yaml",
        yaml.safe_dump(config_to_dict(config), sort_keys=False),
    )
    atomic_write_text(model_dir / "argv.txt", " ".join(argv or sys.argv) + "\n")
    atomic_write_json(
        model_dir / "versions.json",
        {
            "kaleido_tf": kaleido_tf.__version__,
            "tensorflow": tf.__version__,
            "tf_keras": tf_keras.__version__,
            "python": platform.python_version(),
        },
    )
    atomic_write_json(model_dir / "model_config.json", model.get_config())


class Trainer:
    """Trains ``config.system`` on a prepared folder, resuming from ``model_dir``.

    Args:
        config: The experiment.
        data_dir: A ``kaleido-tf prepare`` output folder (the training split).
        model_dir: Checkpoints, TensorBoard logs, run records and pictures.
        strategy: A tf.distribute strategy (default: ``distribute.get_strategy()``).
        init_from: A Google BERT checkpoint directory loaded before the first step
            (ignored when resuming).
        init_checkpoint: A run folder or checkpoint prefix of this project whose
            encoder (and heads of the same ids) start a fine-tuning run (ignored
            when resuming); see ``finetuning.pretrained_weights``.
        argv: The command line, recorded in ``argv.txt``.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        data_dir: str | Path,
        model_dir: str | Path,
        strategy: tf.distribute.Strategy | None = None,
        init_from: str | Path | None = None,
        argv: list[str] | None = None,
        init_checkpoint: str | Path | None = None,
    ) -> None:
        from kaleido_tf.training.distribute import get_strategy

        self.config = config
        self.data_dir = Path(data_dir)
        self.model_dir = Path(model_dir)
        self.system = get_recipe(config)
        self.manifest = check_data(config, self.data_dir)
        self.plan = plan(config, self.data_dir)
        self.strategy = strategy or get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if config.train.global_batch_size % replicas:
            raise ConfigError(
                f"train.global_batch_size {config.train.global_batch_size} is not a "
                f"multiple of the {replicas} replicas"
            )
        self.objectives = self.system.objectives(config)
        tf_keras.utils.set_random_seed(config.train.seed)  # same initial weights
        policy = "mixed_float16" if config.train.mixed_precision else "float32"
        tf_keras.mixed_precision.set_global_policy(policy)
        with self.strategy.scope():
            self.model = kaleido_tf.build_model(config)
            self.optimizer, self.schedule = build_optimizer(
                config.train.optimizer, self.plan.total_steps
            )
            if config.train.mixed_precision:
                self.optimizer = tf_keras.mixed_precision.LossScaleOptimizer(
                    self.optimizer
                )
            self.trackers = {
                f"{k}_loss": tf_keras.metrics.Mean(f"{k}_loss")
                for k in self.objectives.losses
            }
            self.trackers.update(
                {
                    f"{k}_accuracy": tf_keras.metrics.Mean(f"{k}_accuracy")
                    for k in self.objectives.accuracies
                }
            )
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            str(self.model_dir / CHECKPOINT_DIR),
            max_to_keep=config.train.keep_checkpoints,
            step_counter=self.optimizer.iterations,
            checkpoint_interval=config.train.checkpoint_every_steps,
        )
        self.resumed_from = self.manager.restore_or_initialize()
        self.bert_report = None
        self.init_report = None
        if self.resumed_from is None and init_from is not None:
            self.bert_report = kaleido_tf.load_bert_checkpoint(self.model, init_from)
        if self.resumed_from is None and init_checkpoint is not None:
            from kaleido_tf.finetuning.pretrained_weights import (
                load_pretrained_weights,
            )

            self.init_report = load_pretrained_weights(self.model, init_checkpoint)
        write_run_records(self.model_dir, config, argv, self.model)

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (restored on resume)."""
        return int(self.optimizer.iterations.numpy())

    def _replica_step(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(batch, training=True)
            total = tf.constant(0.0)
            for task, term in self.objectives.losses.items():
                values, weights = term(batch, outputs)
                share, _ = weighted_mean(values, weights)
                total += self.objectives.weights[task] * share
                self.trackers[f"{task}_loss"].update_state(values, weights)
            scaled = (
                self.optimizer.get_scaled_loss(total)
                if self.config.train.mixed_precision
                else total
            )
        for task, term in self.objectives.accuracies.items():
            correct, weights = term(batch, outputs)
            self.trackers[f"{task}_accuracy"].update_state(correct, weights)
        mixed = self.config.train.mixed_precision
        grads = tape.gradient(scaled, variables)
        # A variable no loss reaches (e.g. the pooler when captioning) has no
        # gradient; all-reduce needs a tensor for every variable.
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        if mixed:
            grads = self.optimizer.get_unscaled_gradients(grads)
        ctx = tf.distribute.get_replica_context()
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        clip = self.config.train.optimizer.clip_norm
        if clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, clip)
        self.optimizer.apply_gradients(
            zip(grads, variables), experimental_aggregate_gradients=False
        )
        return total

    def gradients(self, batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, list]:
        """Total loss and gradients of one global batch, without an update."""
        return global_loss_and_gradients(
            self.strategy, self.model, self.objectives, batch
        )

    def dataset(self, start_step: int):
        """The distributed training batches from ``start_step`` on (endless)."""
        global_batch = self.config.train.global_batch_size

        def make(ctx: tf.distribute.InputContext):
            return self.system.build_dataset(
                self.data_dir,
                self.config,
                global_batch_size=global_batch,
                start_step=start_step,
                training=True,
                input_context=ctx,
            )

        return self.strategy.distribute_datasets_from_function(make)

    def fit(
        self, progress: bool = True, log=print, stop_at: int | None = None
    ) -> list[dict[str, Any]]:
        """Trains to ``plan.total_steps``; returns the logged history.

        Args:
            progress: Show the Keras progress bar.
            log: Where one-line messages go.
            stop_at: Stop (with a checkpoint) at this step, before the end of the
                schedule; a later ``fit`` resumes there.
        """
        total_steps = self.plan.total_steps
        if stop_at is not None:
            total_steps = min(total_steps, stop_at)
        every = self.config.train.log_every_steps
        writer = tf.summary.create_file_writer(str(self.model_dir / "logs"))

        @tf.function
        def train_steps(iterator, count):
            for _ in tf.range(count):
                self.strategy.run(self._replica_step, args=(next(iterator),))

        history = []
        step = self.step
        if self.resumed_from:
            log(f"resumed from {self.resumed_from} at step {step}")
        bar = tf_keras.utils.Progbar(
            self.plan.total_steps,
            stateful_metrics=list(self.trackers) + ["lr", "total_loss"],
            verbose=(1 if sys.stderr.isatty() else 2) if progress else 0,
        )
        started = time.time()
        iterator = iter(self.dataset(step))
        while step < total_steps:
            count = min(every - step % every, total_steps - step)
            train_steps(iterator, tf.constant(count))
            step += count
            epoch = step // self.plan.steps_per_epoch
            logs = {k: float(t.result()) for k, t in self.trackers.items()}
            logs["total_loss"] = sum(
                self.objectives.weights[k] * logs[f"{k}_loss"]
                for k in self.objectives.losses
            )
            logs["lr"] = float(self.schedule(step - 1))
            if step % every == 0 or step == self.plan.total_steps:
                with writer.as_default(step=step):
                    for key, value in logs.items():
                        tf.summary.scalar(key, value)
                history.append({"step": step, "epoch": epoch, **logs})
                _append_history(self.model_dir, history[-1])
                for t in self.trackers.values():
                    t.reset_state()
            bar.update(step, [(k, v) for k, v in logs.items()])
            self.manager.save(checkpoint_number=step, check_interval=True)
        if (
            self.manager.latest_checkpoint is None
            or not self.manager.latest_checkpoint.endswith(f"-{step}")
        ):
            self.manager.save(checkpoint_number=step, check_interval=False)
        writer.flush()
        log(f"trained to step {step} in {time.time() - started:.0f} s")
        return history


def global_loss_and_gradients(
    strategy: tf.distribute.Strategy, model, objectives, batch: dict[str, tf.Tensor]
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """The total loss and all-reduced gradients of a global batch split over replicas.

    The same reduction as the training step (global denominators, SUM all-reduce),
    without dropout or an update: the replica count must not change the result.
    """
    variables = model.trainable_variables

    def replica(b):
        with tf.GradientTape() as tape:
            outputs = model(b, training=False)
            total = tf.constant(0.0)
            for task, term in objectives.losses.items():
                values, weights = term(b, outputs)
                share, _ = weighted_mean(values, weights)
                total += objectives.weights[task] * share
        grads = tape.gradient(total, variables)
        grads = [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(grads, variables)
        ]
        ctx = tf.distribute.get_replica_context()
        return (
            ctx.all_reduce(tf.distribute.ReduceOp.SUM, total),
            ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads),
        )

    dist = strategy.experimental_distribute_values_from_function(
        lambda ctx: _split(batch, ctx)
    )
    total, grads = strategy.run(replica, args=(dist,))
    local = strategy.experimental_local_results
    return local(total)[0], [local(g)[0] for g in grads]


def _split(batch: dict[str, tf.Tensor], ctx) -> dict[str, tf.Tensor]:
    # Replica i of n takes rows [i*B/n, (i+1)*B/n) of a global batch.
    n, i = ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group
    out = {}
    for key, value in batch.items():
        size = value.shape[0] // n
        out[key] = value[i * size : (i + 1) * size]
    return out


def _append_history(model_dir: Path, row: dict) -> None:
    with open(model_dir / HISTORY_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_history(model_dir: str | Path) -> list[dict]:
    """The logged rows of a run (``history.jsonl``), oldest first."""
    path = Path(model_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
