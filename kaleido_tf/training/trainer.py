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
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
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
from kaleido_tf.training import distribute
from kaleido_tf.training.optimizer import build_optimizer
from kaleido_tf.training.preflight import check_model_dir
from kaleido_tf.training.step_types import draw_step_types, runs, steps_taken

CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.jsonl"
# Exit status of a run stopped by SIGTERM after saving its checkpoint: 128 + 15,
# what a shell reports for a process the signal ended, so schedulers requeue it.
PREEMPTED_EXIT = 143


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
        step_data: Data key -> folder of the recipe's step types whose
            ``StepType.data_key`` is not ``"data"`` (CLI ``--step-data KEY=DIR``).

    A recipe with ``step_types(config)`` (``systems/base.StepType``) trains with
    several step types: one input iterator and one train function per type in
    use, the type of step s drawn on the host from (``train.seed``, s)
    (``training/step_types.py``), so every worker agrees and a resumed run
    replays the same types, each iterator resuming after its own steps. Each
    type's losses are logged under their own ids; a history row adds
    ``<type>_steps`` (the steps of each type since the previous row) and
    ``<type>_total_loss`` (the weighted sum of that type's mean losses), and its
    ``total_loss`` is their step-weighted mean.

    Under ``MultiWorkerMirroredStrategy`` only the chief writes ``model_dir``
    (checkpoints, summaries, history, run records); every worker restores from
    the chief's checkpoints, so ``model_dir`` must be on a file system all
    workers read. Another worker saves its checkpoints (a collective step) to a
    temporary folder removed when ``fit`` ends.
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
        step_data: dict[str, str | Path] | None = None,
    ) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.model_dir = Path(model_dir)
        self.is_chief = distribute.is_chief()
        if self.is_chief:  # before anything slow: fail in the first second
            check_model_dir(self.model_dir, config.train.min_free_disk_mb)
        self.preempted = False
        self.system = get_recipe(config)
        self.step_types, self.step_schedule, self.step_dirs = _step_types(
            self.system, config, self.data_dir, step_data
        )
        if self.step_types is None:  # a recipe's own check (e.g. pixel folders)
            own_check = getattr(self.system, "check_data", None)
            if own_check is not None:
                self.manifest = own_check(self.data_dir, config)
            else:
                self.manifest = check_data(config, self.data_dir)
        else:
            self.manifest = None
            for name, kind in self.step_types.items():
                folder = self.step_dirs[name]
                checked = (kind.check_data or (lambda d, c: check_data(c, d)))(
                    folder, config
                )
                if folder == self.data_dir or self.manifest is None:
                    self.manifest = checked
        self.plan = plan(config, self.data_dir)
        self.strategy = strategy or distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if config.train.global_batch_size % replicas:
            raise ConfigError(
                f"train.global_batch_size {config.train.global_batch_size} is not a "
                f"multiple of the {replicas} replicas"
            )
        if self.step_types is None:
            self.objectives = self.system.objectives(config)
            every_objectives = [self.objectives]
        else:
            every_objectives = [t.objectives for t in self.step_types.values()]
            self.objectives = every_objectives[0]
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
            self.trackers = {}
            for objectives in every_objectives:
                self.trackers.update(
                    {
                        f"{k}_loss": tf_keras.metrics.Mean(f"{k}_loss")
                        for k in objectives.losses
                    }
                )
                self.trackers.update(
                    {
                        f"{k}_accuracy": tf_keras.metrics.Mean(f"{k}_accuracy")
                        for k in objectives.accuracies
                    }
                )
                if objectives.combine is not None:  # adaptive weights, logged
                    self.trackers.update(
                        {
                            f"{k}_weight": tf_keras.metrics.Mean(f"{k}_weight")
                            for k in objectives.losses
                        }
                    )
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer
        )
        self._worker_dir = None
        write_dir = self.model_dir
        if not self.is_chief:
            # Created by the first save, removed when fit ends.
            kind, index = distribute.task()
            self._worker_dir = Path(tempfile.gettempdir()) / (
                f"kaleido_tf_worker_{kind}{index}_{os.getpid()}"
            )
            write_dir = self._worker_dir
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            str(write_dir / CHECKPOINT_DIR),
            max_to_keep=config.train.keep_checkpoints,
            step_counter=self.optimizer.iterations,
        )
        # Every worker restores the chief's latest checkpoint.
        self.resumed_from = tf.train.latest_checkpoint(
            str(self.model_dir / CHECKPOINT_DIR)
        )
        if self.resumed_from is not None:
            self.checkpoint.restore(self.resumed_from)
        self._saved_step = self.step
        self.bert_report = None
        self.init_report = None
        if self.resumed_from is None and init_from is not None:
            self.bert_report = kaleido_tf.load_bert_checkpoint(self.model, init_from)
        if self.resumed_from is None and init_checkpoint is not None:
            from kaleido_tf.finetuning.pretrained_weights import (
                load_pretrained_weights,
            )

            self.init_report = load_pretrained_weights(self.model, init_checkpoint)
        # A recipe's own start-up weights, e.g. CommerceMM's image encoder from a
        # local file named in its config; not on resume or from a pretraining run.
        self.extra_init = None
        initialize = getattr(self.system, "initialize_weights", None)
        if self.resumed_from is None and init_checkpoint is None and initialize:
            self.extra_init = initialize(self.model, config, self.data_dir)
        if self.is_chief:
            write_run_records(self.model_dir, config, argv, self.model)
            if self.resumed_from is not None:  # rows logged after the checkpoint
                _truncate_history(self.model_dir, self.step)

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (restored on resume)."""
        return int(self.optimizer.iterations.numpy())

    def _replica_step(
        self, batch: dict[str, tf.Tensor], objectives=None, call_arguments=None
    ) -> tf.Tensor:
        # objectives / call_arguments: a step type's (None: the recipe's own).
        objectives = objectives or self.objectives
        kwargs = {}
        if call_arguments is not None:  # the step about to be taken, all replicas
            kwargs = call_arguments(self.config, self.optimizer.iterations)
        variables = self.model.trainable_variables
        persistent = objectives.combine_needs_gradients
        with tf.GradientTape(persistent=persistent) as tape:
            outputs = self.model(batch, training=True, **kwargs)
            shares = {}
            for task, term in objectives.losses.items():
                values, weights = term(batch, outputs)
                shares[task], _ = weighted_mean(values, weights)
                self.trackers[f"{task}_loss"].update_state(values, weights)
            norm = _gradient_norm(tape, self.model) if persistent else None
            total, task_weights = objectives.total(shares, norm)
            scaled = (
                self.optimizer.get_scaled_loss(total)
                if self.config.train.mixed_precision
                else total
            )
        for task, term in objectives.accuracies.items():
            correct, weights = term(batch, outputs)
            self.trackers[f"{task}_accuracy"].update_state(correct, weights)
        if objectives.combine is not None:
            for task, weight in task_weights.items():
                self.trackers[f"{task}_weight"].update_state(weight)
        mixed = self.config.train.mixed_precision
        grads = tape.gradient(scaled, variables)
        # A variable no loss reaches (e.g. the pooler when captioning) has no
        # gradient; all-reduce needs a tensor for every variable. Dense: an
        # embedding's IndexedSlices hold one row per token, duplicates unsummed,
        # so the clip's global norm would depend on how the batch is split over
        # replicas and workers (measured: 0.2% between 1 and 2 workers).
        grads = [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(grads, variables)
        ]
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
        try:
            with _SigtermFlag() as flag:
                return self._fit(progress, log, stop_at, flag)
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
            mapped = _data_error(err, self.data_dir, self.manifest)
            if mapped is err:
                raise
            raise mapped from None
        finally:
            if self._worker_dir is not None:
                shutil.rmtree(self._worker_dir, ignore_errors=True)

    def _fit(self, progress, log, stop_at, flag) -> list[dict[str, Any]]:
        total_steps = self.plan.total_steps
        if stop_at is not None:
            total_steps = min(total_steps, stop_at)
        every = self.config.train.log_every_steps
        if self.is_chief:
            writer = tf.summary.create_file_writer(str(self.model_dir / "logs"))
        else:
            writer = tf.summary.create_noop_writer()
        if self.step_types is not None:
            return self._fit_step_types(progress, log, total_steps, flag, writer)
        replica_step = self._replica_step
        if self.config.train.jit_compile:  # as Keras' compile(jit_compile=True)
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def train_steps(iterator, count):
            for _ in tf.range(count):
                self.strategy.run(replica_step, args=(next(iterator),))

        @tf.function
        def any_worker(requested):
            # One worker's SIGTERM stops all of them at the same step.
            value = self.strategy.run(lambda: tf.identity(requested))
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

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
        quiet_log = not (progress and sys.stderr.isatty())
        several = distribute.num_workers() > 1
        while step < total_steps:
            requested = flag.is_set()
            if several:
                requested = float(any_worker(tf.constant(float(requested)))) > 0
            if requested:
                self.preempted = True
                break
            count = min(every - step % every, total_steps - step)
            train_steps(iterator, tf.constant(count))
            step += count
            epoch = step // self.plan.steps_per_epoch
            logs = {k: float(t.result()) for k, t in self.trackers.items()}
            logs["total_loss"] = sum(
                logs.get(f"{k}_weight", self.objectives.weights[k]) * logs[f"{k}_loss"]
                for k in self.objectives.losses
            )
            logs["lr"] = float(self.schedule(step - 1))
            if step % every == 0 or step == self.plan.total_steps:
                with writer.as_default(step=step):
                    for key, value in logs.items():
                        tf.summary.scalar(key, value)
                history.append({"step": step, "epoch": epoch, **logs})
                if self.is_chief:
                    _append_history(self.model_dir, history[-1])
                if quiet_log:  # no live bar (batch job, --quiet): one line
                    log(f"step {step}: " + json.dumps(logs))
                for t in self.trackers.values():
                    t.reset_state()
            bar.update(step, [(k, v) for k, v in logs.items()])
            if step - self._saved_step >= self.config.train.checkpoint_every_steps:
                self._save(step)
        if step != self._saved_step or self.manager.latest_checkpoint is None:
            self._save(step)
        writer.flush()
        if self.preempted:
            log(
                f"stopped by SIGTERM at step {step} with checkpoint "
                f"{self.manager.latest_checkpoint}: rerun the same command to resume"
            )
        else:
            log(f"trained to step {step} in {time.time() - started:.0f} s")
        return history

    def step_type_dataset(self, name: str, start_step: int):
        """The distributed batches of step type ``name`` after ``start_step`` of
        its own steps (endless)."""
        kind = self.step_types[name]
        folder = self.step_dirs[name]
        global_batch = self.config.train.global_batch_size

        def make(ctx: tf.distribute.InputContext):
            return kind.build_dataset(
                folder,
                self.config,
                global_batch_size=global_batch,
                start_step=start_step,
                training=True,
                input_context=ctx,
            )

        return self.strategy.distribute_datasets_from_function(make)

    def step_type_sequence(self, start: int, stop: int) -> list[str]:
        """The step type of each step in ``[start, stop)`` (host draw)."""
        return draw_step_types(
            self.config.train.seed,
            start,
            stop,
            {k: t.probability for k, t in self.step_types.items()},
            self.step_schedule,
        )

    def _fit_step_types(self, progress, log, total_steps, flag, writer):
        """``_fit`` for a recipe with several step types (see the class doc)."""
        every = self.config.train.log_every_steps
        seed = self.config.train.seed
        probabilities = {k: t.probability for k, t in self.step_types.items()}
        train_steps = {}
        for name, kind in self.step_types.items():

            def replica_step(batch, kind=kind):
                return self._replica_step(batch, kind.objectives, kind.call_arguments)

            if self.config.train.jit_compile:
                replica_step = tf.function(replica_step, jit_compile=True)

            @tf.function
            def run(iterator, count, replica_step=replica_step):
                for _ in tf.range(count):
                    self.strategy.run(replica_step, args=(next(iterator),))

            train_steps[name] = run

        @tf.function
        def any_worker(requested):
            value = self.strategy.run(lambda: tf.identity(requested))
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

        history = []
        step = self.step
        if self.resumed_from:
            log(f"resumed from {self.resumed_from} at step {step}")
        taken = steps_taken(seed, step, probabilities, self.step_schedule)
        iterators = {
            name: iter(self.step_type_dataset(name, taken[name]))
            for name in self.step_types
        }
        extra = [f"{k}_steps" for k in self.step_types] + [
            f"{k}_total_loss" for k in self.step_types
        ]
        bar = tf_keras.utils.Progbar(
            self.plan.total_steps,
            stateful_metrics=list(self.trackers) + ["lr", "total_loss"] + extra,
            verbose=(1 if sys.stderr.isatty() else 2) if progress else 0,
        )
        started = time.time()
        quiet_log = not (progress and sys.stderr.isatty())
        several = distribute.num_workers() > 1
        window = dict.fromkeys(self.step_types, 0)
        while step < total_steps:
            requested = flag.is_set()
            if several:
                requested = float(any_worker(tf.constant(float(requested)))) > 0
            if requested:
                self.preempted = True
                break
            count = min(every - step % every, total_steps - step)
            for name, length in runs(self.step_type_sequence(step, step + count)):
                train_steps[name](iterators[name], tf.constant(length))
                window[name] += length
            step += count
            epoch = step // self.plan.steps_per_epoch
            logs = {}
            done = 0
            total = 0.0
            for name, kind in self.step_types.items():
                logs[f"{name}_steps"] = window[name]
                if not window[name]:  # no step of this type since the last row
                    continue
                objectives = kind.objectives
                keys = [f"{k}_loss" for k in objectives.losses]
                keys += [f"{k}_accuracy" for k in objectives.accuracies]
                if objectives.combine is not None:
                    keys += [f"{k}_weight" for k in objectives.losses]
                logs.update({k: float(self.trackers[k].result()) for k in keys})
                type_total = sum(
                    logs.get(f"{k}_weight", objectives.weights[k]) * logs[f"{k}_loss"]
                    for k in objectives.losses
                )
                logs[f"{name}_total_loss"] = type_total
                total += window[name] * type_total
                done += window[name]
            logs["total_loss"] = total / max(done, 1)
            logs["lr"] = float(self.schedule(step - 1))
            if step % every == 0 or step == self.plan.total_steps:
                with writer.as_default(step=step):
                    for key, value in logs.items():
                        tf.summary.scalar(key, value)
                history.append({"step": step, "epoch": epoch, **logs})
                if self.is_chief:
                    _append_history(self.model_dir, history[-1])
                if quiet_log:
                    log(f"step {step}: " + json.dumps(logs))
                for t in self.trackers.values():
                    t.reset_state()
                window = dict.fromkeys(self.step_types, 0)
            bar.update(step, [(k, v) for k, v in logs.items()])
            if step - self._saved_step >= self.config.train.checkpoint_every_steps:
                self._save(step)
        if step != self._saved_step or self.manager.latest_checkpoint is None:
            self._save(step)
        writer.flush()
        if self.preempted:
            log(
                f"stopped by SIGTERM at step {step} with checkpoint "
                f"{self.manager.latest_checkpoint}: rerun the same command to resume"
            )
        else:
            log(f"trained to step {step} in {time.time() - started:.0f} s")
        return history

    def _save(self, step: int) -> None:
        # Every worker saves (collective); only the chief's folder is kept.
        self.manager.save(checkpoint_number=step, check_interval=False)
        self._saved_step = step


def _step_types(system, config, data_dir: Path, step_data):
    """``(types in use, schedule, type -> folder)`` of a recipe with
    ``step_types``, else ``(None, None, None)``; checks the probabilities and
    that every type in use has its folder."""
    from kaleido_tf.training.step_types import check_probabilities

    make = getattr(system, "step_types", None)
    if make is None:
        if step_data:
            raise ConfigError(
                f"--step-data {sorted(step_data)} given, but {config.system} has a "
                "single step type: drop it"
            )
        return None, None, None
    every = make(config)
    schedule = getattr(system, "step_schedule", lambda c: "random")(config)
    check_probabilities({k: t.probability for k, t in every.items()}, schedule)
    folders = {"data": data_dir, **{k: Path(v) for k, v in (step_data or {}).items()}}
    used = {k: t for k, t in every.items() if t.probability > 0}
    known = {t.data_key for t in every.values()} | {"data"}
    unknown = sorted(set(folders) - known)
    if unknown:
        raise ConfigError(
            f"--step-data {unknown[0]}=... names no data key of {config.system}'s "
            f"step types (keys: {sorted(known - {'data'})})"
        )
    dirs = {}
    for name, kind in used.items():
        if kind.data_key not in folders:
            raise ConfigError(
                f"{config.system} runs {name} steps (probability "
                f"{kind.probability}) on their own data: give the folder with "
                f"--step-data {kind.data_key}=DIR"
                + (" (or --omni-data DIR)" if kind.data_key == "omni" else "")
            )
        dirs[name] = folders[kind.data_key]
    seen: dict[str, str] = {}
    for name, kind in used.items():
        for key in (*kind.objectives.losses, *kind.objectives.accuracies):
            if seen.setdefault(key, name) != name:
                raise ConfigError(
                    f"step types {seen[key]} and {name} both log {key!r}: give "
                    "their losses distinct ids"
                )
    return used, schedule, dirs


def global_loss_and_gradients(
    strategy: tf.distribute.Strategy, model, objectives, batch: dict[str, tf.Tensor]
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """The total loss and all-reduced gradients of a global batch split over replicas.

    The same reduction as the training step (global denominators, SUM all-reduce),
    without dropout or an update: the replica count must not change the result.
    """
    variables = model.trainable_variables

    def replica(b):
        persistent = objectives.combine_needs_gradients
        with tf.GradientTape(persistent=persistent) as tape:
            outputs = model(b, training=False)
            shares = {}
            for task, term in objectives.losses.items():
                values, weights = term(b, outputs)
                shares[task], _ = weighted_mean(values, weights)
            norm = _gradient_norm(tape, model) if persistent else None
            total, _ = objectives.total(shares, norm)
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


def _gradient_norm(tape: tf.GradientTape, model):
    """``loss -> ||d loss / d encoder||`` over the global batch (a persistent tape).

    The shared parameters are the encoder's (``model.encoder``), else the model's.
    """
    encoder = getattr(model, "encoder", model)
    variables = encoder.trainable_variables

    def norm(loss: tf.Tensor) -> tf.Tensor:
        grads = tape.gradient(loss, variables)
        # Dense: an IndexedSlices' values may repeat rows (gathered embeddings).
        grads = [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(grads, variables)
        ]
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        return tf.linalg.global_norm(grads)

    return norm


def _split(batch: dict[str, tf.Tensor], ctx) -> dict[str, tf.Tensor]:
    # Replica i of n takes rows [i*B/n, (i+1)*B/n) of a global batch.
    n, i = ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group
    out = {}
    for key, value in batch.items():
        size = value.shape[0] // n
        out[key] = value[i * size : (i + 1) * size]
    return out


class _SigtermFlag:
    """Sets a flag on SIGTERM while ``fit`` runs (main thread only); the loop
    checks it between step chunks, saves a checkpoint and returns."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def __enter__(self) -> _SigtermFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(
                signal.SIGTERM, lambda signum, frame: self._event.set()
            )
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _data_error(err: tf.errors.OpError, data_dir: Path, manifest: dict) -> Exception:
    """A DataError naming the record or shard behind an input-pipeline error."""
    from kaleido_tf.inputs.checks import NON_FINITE, find_corrupt_shard

    text = err.message or str(err)
    if NON_FINITE in text:
        # "... assertion failed: [<NON_FINITE> <key> of record image_id=] [<id>]"
        line = next(x for x in text.splitlines() if NON_FINITE in x)
        what = line[line.index(NON_FINITE) :].replace("=] [", "=", 1).rstrip("]")
        return DataError(
            f"{data_dir}: {what}: rebuild the shard that holds it with "
            "`kaleido-tf prepare`"
        )
    if isinstance(err, tf.errors.DataLossError):
        files = [data_dir / s["file"] for s in manifest["shards"]]
        found = find_corrupt_shard(files)
        if found is not None:
            path, why = found
            return DataError(
                f"{path}: truncated or corrupt TFRecord shard ({why}): delete it "
                "and its .done.json marker and rerun `kaleido-tf prepare`"
            )
        return DataError(f"{data_dir}: corrupt TFRecord data ({text.splitlines()[0]})")
    return err


def _truncate_history(model_dir: Path, step: int) -> None:
    """Drops rows logged after ``step`` (a run killed after its checkpoint)."""
    from kaleido_tf.atomic_files import atomic_write_text

    rows = read_history(model_dir)
    kept = [row for row in rows if row["step"] <= step]
    if len(kept) < len(rows):
        atomic_write_text(
            model_dir / HISTORY_FILE, "".join(json.dumps(r) + "\n" for r in kept)
        )


def _append_history(model_dir: Path, row: dict) -> None:
    with open(model_dir / HISTORY_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_history(model_dir: str | Path) -> list[dict]:
    """The logged rows of a run (``history.jsonl``), oldest first."""
    path = Path(model_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
