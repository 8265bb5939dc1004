"""``kaleido-tf align train``: trains the SAT captioner on a prepared training split.

Kaleido-BERT §3.3 / kaleido_fashionbert.md §4.2 step 1 (K-Q10): image = the KPG crop
resized to 224, caption = the product description (lower-case words, vocabulary of
words seen >= 5 times, at most 50 words), teacher forcing, loss = NLL +
λ·Σ_i(1 − Σ_t α_ti)². The encoder is frozen, so only the decoder trains.

The model folder holds ``captioner.json`` (model config, encoder weights source,
the settings of the run), ``caption_vocab.json``, the resolved ``config.yaml``,
``argv.txt``, ``versions.json`` and ``checkpoints/`` (tf.train.CheckpointManager,
every ``train.checkpoint_every`` steps and at the end). A rerun with the same
settings resumes from the last checkpoint and reproduces the same batch order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import kaleido_tf
from data_prep.alignment.caption_vocab import (
    PAD_ID,
    CaptionVocab,
    basic_words,
    caption_words,
)
from data_prep.alignment.prepared_images import ImageEntry, PreparedImages
from kaleido_tf.atomic_files import atomic_write_json, atomic_write_text
from kaleido_tf.config.alignment import AlignmentConfig
from kaleido_tf.config.loader import config_to_dict
from kaleido_tf.errors import CheckpointError, ConfigError, DataError

RUN_FILE = "captioner.json"
VOCAB_FILE = "caption_vocab.json"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
# Settings that may change between a run and its resumption.
_RESUMABLE_KEYS = ("train_steps", "checkpoint_every", "max_checkpoints")


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """One captioner training run.

    Attributes:
        data_dir: A prepared folder (normally the training split).
        model_dir: Output folder (created; resumed when it holds this run).
        config: The resolved AlignmentConfig.
        backbone_weights: Local "notop" ``.h5`` of the encoder backbone, or None
            for seeded random weights (only on an explicit
            ``--backbone-weights none``).
        seed: Seed of the batch order, the decoder's initial weights and the
            encoder's random weights.
        progress: Show a tqdm progress bar.
        overwrite: Replace a model folder that holds a run with other settings.
        source_h5: The Fashion-Gen file the data was prepared from (default:
            the manifest's).
        command: The command line, recorded in ``argv.txt``.
        config_source: Where the config came from.
    """

    data_dir: Path
    model_dir: Path
    config: AlignmentConfig
    backbone_weights: Path | None
    seed: int = 0
    progress: bool = True
    overwrite: bool = False
    source_h5: Path | None = None
    command: str = ""
    config_source: str = ""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_fingerprint(prefix: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of a checkpoint's index and data files."""
    prefix = Path(prefix)
    files = sorted(prefix.parent.glob(prefix.name + ".*"))
    if not files:
        raise CheckpointError(f"checkpoint {prefix} has no files")
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode())
        h.update(sha256_file(path).encode())
    return h.hexdigest()[:16]


def build_captioner(config: AlignmentConfig, vocab_size: int, seed: int = 0):
    """An untrained SATCaptioner for ``config`` (decoder weights created).

    Args:
        config: The alignment config (``encoder`` and ``decoder`` sections).
        vocab_size: V.
        seed: Seed of the encoder's random weights and the decoder's init.

    Returns:
        An ``SATCaptioner``.
    """
    from data_prep.alignment.sat_captioner import SATCaptioner

    model = SATCaptioner(
        vocab_size=vocab_size,
        backbone=config.encoder.name,
        output_layer=config.encoder.resolved_layer,
        image_size=config.encoder.image_size,
        grid_size=config.encoder.grid_size,
        embedding_dim=config.decoder.embedding_dim,
        lstm_units=config.decoder.lstm_units,
        attention_dim=config.decoder.attention_dim,
        dropout=config.decoder.dropout,
        seed=seed,
        name="sat_captioner",
    )
    model.build_decoder()
    return model


@dataclasses.dataclass
class LoadedCaptioner:
    """A trained captioner restored from a model folder.

    Attributes:
        model: The ``SATCaptioner`` with its checkpoint's weights.
        vocab: Its CaptionVocab.
        checkpoint: The checkpoint prefix restored.
        fingerprint: ``checkpoint_fingerprint(checkpoint)``.
        step: The training step of the checkpoint.
        info: The content of ``captioner.json``.
    """

    model: Any
    vocab: CaptionVocab
    checkpoint: str
    fingerprint: str
    step: int
    info: dict[str, Any]


def load_captioner(
    model_dir: str | Path, checkpoint: str | Path | None = None
) -> LoadedCaptioner:
    """Restores the captioner of a model folder (every variable must be matched).

    Args:
        model_dir: A folder written by ``train_captioner``.
        checkpoint: A checkpoint prefix; default: the latest in the folder.

    Raises:
        CheckpointError: No such folder or checkpoint, or a checkpoint that does
            not fit the model described in ``captioner.json``.
    """
    import tensorflow as tf

    from data_prep.alignment.sat_captioner import SATCaptioner

    model_dir = Path(model_dir)
    run_file = model_dir / RUN_FILE
    if not run_file.is_file():
        raise CheckpointError(
            f"{run_file} not found: {model_dir} is not a captioner folder; run "
            "`kaleido-tf align train` first"
        )
    info = json.loads(run_file.read_text(encoding="utf-8"))
    vocab = CaptionVocab.load(model_dir / VOCAB_FILE)
    if checkpoint is None:
        checkpoint = tf.train.latest_checkpoint(str(model_dir / CHECKPOINT_DIR))
        if checkpoint is None:
            raise CheckpointError(
                f"{model_dir / CHECKPOINT_DIR} holds no checkpoint: run (or resume) "
                "`kaleido-tf align train`"
            )
    checkpoint = str(checkpoint)
    model = SATCaptioner.from_config(info["model_config"])
    model.build_decoder()
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    try:
        status = tf.train.Checkpoint(model=model, step=step).read(checkpoint)
        status.assert_existing_objects_matched().expect_partial()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
        msg = str(e).splitlines()[0][:200]
        raise CheckpointError(
            f"checkpoint {checkpoint} does not fit the captioner of {run_file} ({msg})"
        ) from None
    return LoadedCaptioner(
        model, vocab, checkpoint, checkpoint_fingerprint(checkpoint), int(step), info
    )


def batch_indices(step: int, batch_size: int, count: int, seed: int) -> np.ndarray:
    """Example indices of training step ``step`` (0-based).

    Epoch e visits a permutation drawn from ``default_rng([seed, e])``; step s
    takes positions [s·B, (s+1)·B) of the concatenated epochs, so the order only
    depends on the seed and a resumed run continues it exactly.

    Returns:
        int64 [batch_size].
    """
    out = []
    start = step * batch_size
    stop = start + batch_size
    epoch = start // count
    while epoch * count < stop:
        perm = np.random.default_rng([seed, epoch]).permutation(count)
        a = max(start, epoch * count) - epoch * count
        b = min(stop, (epoch + 1) * count) - epoch * count
        out.append(perm[a:b])
        epoch += 1
    return np.concatenate(out).astype(np.int64)


def _settings(req: TrainRequest, images: PreparedImages, weights_sha: str | None):
    config = config_to_dict(req.config)
    for key in _RESUMABLE_KEYS:
        config["train"].pop(key)
    manifest = images.manifest
    return {
        "config": config,
        "data": {
            "path": str(req.data_dir.resolve()),
            "split": manifest.get("split"),
            "created": manifest.get("created"),
            "images": manifest["counts"].get("images"),
        },
        "backbone_weights_sha256": weights_sha,
        "seed": req.seed,
    }


def _prepare_model_dir(req: TrainRequest, settings: dict[str, Any], log) -> bool:
    """Checks a previous run in ``model_dir``; returns whether to resume it."""
    run_file = req.model_dir / RUN_FILE
    if not run_file.is_file():
        return False
    try:
        old = json.loads(run_file.read_text(encoding="utf-8")).get("settings")
    except (OSError, json.JSONDecodeError):
        old = None
    if old == settings:
        return True
    changed = sorted(
        k for k in set(old or {}) | set(settings) if (old or {}).get(k) != settings[k]
    )
    if not req.overwrite:
        raise ConfigError(
            f"{req.model_dir} holds a captioner trained with other settings "
            f"(differs in {changed}): pass --overwrite to replace it, or choose "
            "another --model-dir"
        )
    log(f"--overwrite: removing the previous captioner in {req.model_dir}")
    shutil.rmtree(req.model_dir / CHECKPOINT_DIR, ignore_errors=True)
    for name in (RUN_FILE, VOCAB_FILE):
        (req.model_dir / name).unlink(missing_ok=True)
    return False


def _versions() -> dict[str, str]:
    import numpy
    import tensorflow as tf
    import tf_keras

    return {
        "kaleido_tf": kaleido_tf.__version__,
        "tensorflow": tf.__version__,
        "tf_keras": tf_keras.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
    }


class _GridSource:
    """Grid features of training examples, cached in memory or encoded per batch."""

    def __init__(self, model, images, entries, config, progress, log) -> None:
        import tensorflow as tf
        from tqdm import tqdm

        self.images = images
        self.entries = entries
        self.size = config.encoder.image_size
        self.encode = tf.function(lambda x: model.encoder(x), reduce_retracing=True)
        self.cache = None
        if config.train.cache_grid_features:
            g = int(np.prod(model.grid_shape))
            need = len(entries) * g * model.encoder.channels * 2
            if need > 8 << 30:
                raise ConfigError(
                    f"train.cache_grid_features would hold {need / 2**30:.1f} GiB of "
                    "grids: set it to false for this data set"
                )
            self.cache = np.empty((len(entries), g, model.encoder.channels), np.float16)
            step = config.decode.batch_size
            bar = tqdm(
                total=len(entries),
                desc="encode grids",
                unit="img",
                disable=not progress,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            with bar:
                for a in range(0, len(entries), step):
                    chunk = entries[a : a + step]
                    self.cache[a : a + len(chunk)] = self._encode(chunk)
                    bar.update(len(chunk))
            log(f"cached the grids of {len(entries)} training images")

    def _encode(self, chunk: list[ImageEntry]) -> np.ndarray:
        return self.encode(self.images.crops(chunk, self.size)).numpy()

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        if self.cache is not None:
            return self.cache[indices].astype(np.float32)
        return self._encode([self.entries[i] for i in indices])


def train_captioner(
    req: TrainRequest, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Trains (or resumes) the captioner. See the module docstring.

    Returns:
        A summary: model folder, steps run, last checkpoint, vocabulary size,
        training images, mean losses over the last steps.

    Raises:
        DataError, ConfigError, CheckpointError: bad input, reported before
            training starts.
    """
    import tensorflow as tf
    import tf_keras
    import yaml
    from tqdm import tqdm

    from data_prep.alignment.sat_captioner import captioner_loss

    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    cfg = req.config
    images = PreparedImages(req.data_dir, req.source_h5)
    if images.manifest.get("split") not in ("train", None):
        log(
            f"note: {req.data_dir} is the {images.manifest.get('split')!r} split; "
            "the captioner is meant to be trained on the training split (§4.2)"
        )
    weights_sha = sha256_file(req.backbone_weights) if req.backbone_weights else None
    settings = _settings(req, images, weights_sha)
    req.model_dir.mkdir(parents=True, exist_ok=True)
    resume = _prepare_model_dir(req, settings, log)

    entries = images.entries()
    if not entries:
        raise DataError(f"{req.data_dir} holds no records to train on")
    words_of: dict[int, list[str]] = {}
    pids = sorted({e.product_id for e in entries})
    for pid, words in zip(
        pids, basic_words([images.text(p) for p in pids], images.lower_case)
    ):
        words_of[pid] = caption_words(words)
    captions = [words_of[e.product_id] for e in entries]
    vocab_path = req.model_dir / VOCAB_FILE
    if resume:
        vocab = CaptionVocab.load(vocab_path)
    else:
        vocab = CaptionVocab.build(captions, cfg.vocab.min_word_count)
        vocab.save(vocab_path)
    max_words = cfg.vocab.max_train_words
    ids = np.stack([vocab.encode(c, max_words) for c in captions])  # [N, L]
    lengths = (ids != PAD_ID).sum(axis=1)  # tokens incl. <start> and <end>

    tf_keras.utils.set_random_seed(req.seed)
    model = build_captioner(cfg, len(vocab), req.seed)
    if req.backbone_weights is not None:
        model.encoder.load_backbone_weights(str(req.backbone_weights))
        weights_note = str(req.backbone_weights.resolve())
    else:
        log(
            f"warning: --backbone-weights none: the {cfg.encoder.name} grid encoder "
            f"has random weights (seed {req.seed}); the captioner is for demos and "
            "tests only, and captioner.json says so"
        )
        weights_note = None
    info = {
        "model_config": model.get_config(),
        "grid_shape": list(model.grid_shape),
        "vocab_file": VOCAB_FILE,
        "vocab_size": len(vocab),
        "encoder": {
            "name": cfg.encoder.name,
            "layer": cfg.encoder.resolved_layer,
            "image_size": cfg.encoder.image_size,
            "weights": weights_note,
            "weights_sha256": weights_sha,
            "random_init_seed": None if weights_note else req.seed,
        },
        "settings": settings,
        "config_source": req.config_source,
    }
    atomic_write_json(req.model_dir / RUN_FILE, info)
    atomic_write_text(
        req.model_dir / CONFIG_FILE,
        f"# resolved from {req.config_source or '<defaults>'}\n"
        + yaml.safe_dump(config_to_dict(cfg), sort_keys=False),
    )
    atomic_write_text(req.model_dir / "argv.txt", req.command + "\n")
    atomic_write_json(req.model_dir / "versions.json", _versions())

    optimizer = tf_keras.optimizers.Adam(
        learning_rate=cfg.train.learning_rate, global_clipnorm=cfg.train.clip_norm
    )
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var)
    manager = tf.train.CheckpointManager(
        checkpoint, str(req.model_dir / CHECKPOINT_DIR), cfg.train.max_checkpoints
    )
    if resume and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log(f"resuming from {manager.latest_checkpoint} (step {int(step_var)})")
    start = int(step_var)
    total = cfg.train.train_steps
    summary: dict[str, Any] = {
        "model_dir": str(req.model_dir),
        "images": len(entries),
        "vocab_size": len(vocab),
        "grid": "x".join(str(d) for d in model.grid_shape),
        "steps_before": start,
    }
    if start >= total:
        log(f"{req.model_dir}: already trained to step {start}, nothing to do")
        summary.update(steps_run=0, checkpoint=manager.latest_checkpoint)
        return summary

    grids = _GridSource(model, images, entries, cfg, req.progress, log)
    lam = float(cfg.train.attention_regularization)
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(grid, batch_ids):
        with tf.GradientTape() as tape:
            out = model(
                {"grid_features": grid, "input_ids": batch_ids[:, :-1]}, training=True
            )
            losses = captioner_loss(batch_ids[:, 1:], out, lam)
            loss = tf.reduce_mean(losses["loss"])
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        tokens = tf.reduce_sum(tf.cast(batch_ids[:, 1:] != PAD_ID, tf.float32))
        return (
            loss,
            tf.reduce_sum(losses["nll"]) / tokens,
            tf.reduce_mean(losses["penalty"]),
        )

    bar = tqdm(
        total=total,
        initial=start,
        desc="align train",
        unit="step",
        disable=not req.progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    recent: list[tuple[float, float, float]] = []
    t0 = time.perf_counter()
    with bar:
        for step in range(start, total):
            idx = batch_indices(step, cfg.train.batch_size, len(entries), req.seed)
            width = int(lengths[idx].max())
            loss, nll, penalty = train_step(
                tf.constant(grids(idx)), tf.constant(ids[idx, :width])
            )
            step_var.assign(step + 1)
            recent = (recent + [(float(loss), float(nll), float(penalty))])[-50:]
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.3f}", nll_per_word=f"{nll:.3f}", attn=f"{penalty:.2f}"
            )
            if (step + 1) % cfg.train.checkpoint_every == 0 or step + 1 == total:
                path = manager.save(checkpoint_number=step + 1)
                mean_loss = np.mean([r[0] for r in recent])
                mean_nll = np.mean([r[1] for r in recent])
                log(
                    f"step {step + 1}/{total}: loss {mean_loss:.3f}, NLL/word "
                    f"{mean_nll:.3f}; saved {path}"
                )
    summary.update(
        steps_run=total - start,
        seconds=round(time.perf_counter() - t0, 1),
        checkpoint=manager.latest_checkpoint,
        loss=round(float(np.mean([r[0] for r in recent])), 4),
        nll_per_word=round(float(np.mean([r[1] for r in recent])), 4),
        attention_penalty=round(float(np.mean([r[2] for r in recent])), 4),
    )
    images.close()
    return summary
