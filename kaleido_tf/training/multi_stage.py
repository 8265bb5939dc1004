"""Multi-stage pretraining: stages run in order under one run folder.

ImageBERT pretrains on large out-of-domain data first and on smaller in-domain data
next, the same network continuing from stage to stage (ImageBERT §4.2, Figure 5).
``train.stages`` lists the stages; each is an ordinary ``Trainer`` run in
``<model_dir>/stage_<i>_<name>/`` (checkpoints, history, run records) whose config
is the experiment with that stage's data, length and optimizer overrides. Stage 1
starts as ``--init-from`` says (a Google BERT checkpoint, or the initialisers);
stage k > 1 starts from stage k-1's final checkpoint, model weights only: a fresh
optimizer (no Adam moments, step 0) and a fresh warm-up and decay schedule over the
stage's own steps (spec §2.11 rows 13-14: epochs per stage, optimizer reset).

``<model_dir>/stages.json`` records the plan and each stage's status (``pending``,
``running``, ``done``). Rerunning the same command skips finished stages and
resumes the unfinished one from its last checkpoint, as a single-stage run does;
a run whose recorded stage list differs from the config's is refused.

Reference: ImageBERT §4.2, Figure 5; spec imagebert_interbert_commercemm.md §2.5
and §2.11 rows 13-14.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf

from kaleido_tf.atomic_files import atomic_write_json
from kaleido_tf.checkpoints.trained_model import STAGES_FILE, latest_checkpoint
from kaleido_tf.config.experiment import ExperimentConfig, StageConfig
from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.training import distribute
from kaleido_tf.training.preflight import check_model_dir
from kaleido_tf.training.trainer import CHECKPOINT_DIR, Trainer, check_data, plan

PENDING, RUNNING, DONE = "pending", "running", "done"


@dataclasses.dataclass
class MultiStageResult:
    """What ``run_stages`` did.

    Attributes:
        stages: The records of ``stages.json``, one dict per stage (``index``,
            ``name``, ``dir``, ``stage``, ``data_dir``, ``status``, ``step``,
            ``total_steps``, ``checkpoint``, ``initialised_from``).
        preempted: A stage stopped on SIGTERM (checkpoint saved; rerun the same
            command to resume).
        finished: Every stage is done.
    """

    stages: list[dict[str, Any]]
    preempted: bool
    finished: bool


def stage_dir(model_dir: str | Path, index: int, stage: StageConfig) -> Path:
    """The run folder of stage ``index`` (1-based): ``stage_<index>_<name>``."""
    return Path(model_dir) / f"stage_{index}_{stage.name}"


def stage_config(config: ExperimentConfig, stage: StageConfig) -> ExperimentConfig:
    """The experiment of one stage: its length and optimizer overrides, no stages.

    Every other setting (model, tasks, batch size, seed, checkpointing) is the
    experiment's, the same in every stage (spec §2.5: "the same training
    strategy").
    """
    train = config.train
    optimizer = train.optimizer
    if stage.learning_rate is not None:
        optimizer = dataclasses.replace(optimizer, learning_rate=stage.learning_rate)
    if stage.warmup_steps is not None:
        optimizer = dataclasses.replace(
            optimizer, warmup_steps=stage.warmup_steps, warmup_fraction=0.0
        )
    if stage.warmup_fraction is not None:
        optimizer = dataclasses.replace(
            optimizer, warmup_fraction=stage.warmup_fraction, warmup_steps=0
        )
    train = dataclasses.replace(
        train,
        epochs=stage.epochs if stage.epochs is not None else train.epochs,
        max_steps=stage.max_steps,
        optimizer=optimizer,
        stages=(),
    )
    return dataclasses.replace(config, train=train)


def resolve_stage_data(
    stage: StageConfig,
    data_dir: str | Path | None,
    stage_data: Mapping[str, str | Path],
) -> Path:
    """The prepared folder a stage reads.

    ``stage.data`` is looked up in ``stage_data`` (``--stage-data KEY=DIR``),
    else read as a path relative to ``data_dir`` (``--data``); empty means
    ``data_dir``.

    Raises:
        ConfigError: Neither gives an existing folder.
        DataError: The ``--stage-data`` folder does not exist.
    """
    if stage.data in stage_data:
        folder = Path(stage_data[stage.data])
        if not folder.is_dir():
            raise DataError(
                f"--stage-data {stage.data}={folder}: no such folder (stage "
                f"{stage.name!r}): give a `kaleido-tf prepare` output folder"
            )
        return folder
    if data_dir is None:
        raise ConfigError(
            f"stage {stage.name!r} reads data {stage.data!r}: give "
            f"--stage-data {stage.data or 'KEY'}=DIR (or --data)"
        )
    folder = Path(data_dir) / stage.data
    if not folder.is_dir():
        raise ConfigError(
            f"stage {stage.name!r} reads data {stage.data!r}: no --stage-data "
            f"{stage.data}=DIR and no folder {folder}: give --stage-data "
            f"{stage.data}=DIR"
        )
    return folder


def read_stages(model_dir: str | Path) -> dict[str, Any] | None:
    """The ``stages.json`` of a multi-stage run folder (None if there is none)."""
    import json

    path = Path(model_dir) / STAGES_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text("utf-8"))


def _check_plan(record: dict[str, Any], stages: tuple[StageConfig, ...], path) -> None:
    """Refuses a config whose stage list differs from the recorded one."""
    recorded = [row["stage"] for row in record["stages"]]
    wanted = [dataclasses.asdict(s) for s in stages]
    if recorded == wanted:
        return
    for i in range(max(len(recorded), len(wanted))):
        old = recorded[i] if i < len(recorded) else None
        new = wanted[i] if i < len(wanted) else None
        if old != new:
            break
    raise ConfigError(
        f"{path} records stage {i + 1} as {old} but the config gives {new}: a "
        "run's stage list cannot change; restore it or use a new --model-dir"
    )


def run_stages(
    config: ExperimentConfig,
    model_dir: str | Path,
    data_dir: str | Path | None = None,
    stage_data: Mapping[str, str | Path] | None = None,
    init_from: str | Path | None = None,
    argv: list[str] | None = None,
    strategy=None,
    fit: Callable[[Any], Any] | None = None,
    log: Callable[[str], None] = print,
) -> MultiStageResult:
    """Runs ``config.train.stages`` in order, resuming a run folder.

    Args:
        config: An experiment with ``train.stages``.
        model_dir: The run folder; stage i trains in ``stage_<i>_<name>/``.
        data_dir: ``--data``: the folder that stage paths are relative to.
        stage_data: ``--stage-data`` keys -> prepared folders.
        init_from: A Google BERT checkpoint that starts stage 1.
        argv: The command line, recorded in each stage's ``argv.txt``.
        strategy: A tf.distribute strategy (default: the Trainer's).
        fit: Trains one stage's ``Trainer`` (default: ``trainer.fit(log=log)``);
            the CLI adds its per-stage report here. A stage counts as done when
            its trainer reached the end of its schedule afterwards.
        log: Where one-line messages go.

    Returns:
        A MultiStageResult; after SIGTERM, ``preempted`` is true and the stages
        after the interrupted one have not started.

    Raises:
        ConfigError: No stages, an unknown ``--stage-data`` key, a stage whose data
            is not given, or a stage list that differs from the run's record.
    """
    stages = config.train.stages
    if not stages:
        raise ConfigError("run_stages needs train.stages in the config")
    model_dir = Path(model_dir)
    path = model_dir / STAGES_FILE
    chief = distribute.is_chief()
    if chief:  # before anything slow: fail in the first second
        check_model_dir(model_dir, config.train.min_free_disk_mb)
    record = read_stages(model_dir)
    if record is not None:
        _check_plan(record, stages, path)
    else:
        record = {
            "system": config.system,
            "stages": [
                {
                    "index": i,
                    "name": s.name,
                    "dir": stage_dir(model_dir, i, s).name,
                    "stage": dataclasses.asdict(s),
                    "data_dir": None,
                    "status": PENDING,
                    "step": 0,
                    "total_steps": None,
                    "checkpoint": None,
                    "initialised_from": None,
                }
                for i, s in enumerate(stages, start=1)
            ],
        }
    rows = record["stages"]
    stage_data = dict(stage_data or {})
    keys = {s.data for s in stages}
    unknown = sorted(set(stage_data) - keys)
    if unknown:
        raise ConfigError(
            f"--stage-data {unknown[0]}: no stage reads data {unknown[0]!r}; the "
            f"stages read {sorted(keys)}"
        )

    def save() -> None:
        if chief:
            atomic_write_json(path, record)

    # Every unfinished stage's data, checked before stage 1 trains for days.
    folders = {}
    for i, (stage, row) in enumerate(zip(stages, rows), start=1):
        if row["status"] != DONE:
            folders[i] = resolve_stage_data(stage, data_dir, stage_data)
            cfg = stage_config(config, stage)
            check_data(cfg, folders[i])
            row["data_dir"] = str(folders[i])
            if row["total_steps"] is None:
                row["total_steps"] = plan(cfg, folders[i]).total_steps
    save()

    count = len(stages)
    for i, (stage, row) in enumerate(zip(stages, rows), start=1):
        title = f"stage {i}/{count} {stage.name}"
        folder = stage_dir(model_dir, i, stage)
        if row["status"] == DONE:
            log(f"{title}: done at step {row['step']} ({row['checkpoint']}), skipped")
            continue
        init_checkpoint = None
        if tf.train.latest_checkpoint(str(folder / CHECKPOINT_DIR)) is None:
            if i > 1:  # model weights only: the new Trainer's optimizer is fresh
                previous = stage_dir(model_dir, i - 1, stages[i - 2])
                init_checkpoint = latest_checkpoint(previous)
                row["initialised_from"] = os.path.relpath(init_checkpoint, model_dir)
            else:
                row["initialised_from"] = str(init_from) if init_from else None
        log(f"{title}: data {folders[i]}, {row['total_steps']} steps, into {folder}")
        trainer = Trainer(
            stage_config(config, stage),
            folders[i],
            folder,
            strategy=strategy,
            init_from=init_from if i == 1 else None,
            argv=argv,
            init_checkpoint=init_checkpoint,
        )
        if trainer.bert_report is not None:
            log(trainer.bert_report.format())
        if trainer.init_report is not None:
            log(f"{title}: {trainer.init_report.summary()}")
        row["status"] = RUNNING
        row["total_steps"] = trainer.plan.total_steps
        save()
        if fit is None:
            trainer.fit(log=log)
        else:
            fit(trainer)
        row["step"] = trainer.step
        if chief and trainer.manager.latest_checkpoint is not None:
            row["checkpoint"] = os.path.relpath(
                trainer.manager.latest_checkpoint, model_dir
            )
        preempted = trainer.preempted
        finished = trainer.step >= trainer.plan.total_steps
        if finished:
            row["status"] = DONE
        save()
        del trainer
        gc.collect()
        if not finished:
            where = "stopped by SIGTERM" if preempted else "stopped"
            log(f"{title}: {where} at step {row['step']}: rerun to resume")
            return MultiStageResult(rows, preempted, False)
        log(f"{title}: done at step {row['step']}")
    return MultiStageResult(rows, False, True)
