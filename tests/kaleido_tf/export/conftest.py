"""Shared export fixtures: real validation records, one retrieval export, and a
fresh Python process that loads a SavedModel and runs its signatures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]

# Runs in a new interpreter that imports neither kaleido_tf nor (unless asked)
# tensorflow_text: what a serving client has. Request keys are
# "<call>|<signature>|<input>"; reply keys "<call>|<output>".
FRESH_PROCESS_SCRIPT = """
import sys

import numpy as np
import tensorflow as tf

export_dir, request, reply, text_ops = sys.argv[1:5]
if text_ops == "1":
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)
loaded = tf.saved_model.load(export_dir)
data = np.load(request)
calls = {}
for key in data.files:
    call, signature, name = key.split("|")
    calls.setdefault((call, signature), {})[name] = data[key]
out = {
    "modules|kaleido_tf": np.array("kaleido_tf" in sys.modules),
    "modules|tensorflow_text": np.array("tensorflow_text" in sys.modules),
    "signatures|names": np.array(sorted(loaded.signatures)),
}
for (call, signature), inputs in calls.items():
    result = loaded.signatures[signature](
        **{k: tf.constant(v) for k, v in inputs.items()}
    )
    for name, value in result.items():
        out[f"{call}|{name}"] = value.numpy()
np.savez(reply, **out)
"""


def run_in_fresh_process(
    export_dir: Path,
    calls: dict[str, tuple[str, dict[str, np.ndarray]]],
    work_dir: Path,
    text_ops: bool,
) -> dict[str, dict[str, np.ndarray]]:
    """Loads ``export_dir`` in a new process and runs ``calls`` there.

    Args:
        export_dir: A SavedModel folder.
        calls: Call id -> (signature name, input name -> array).
        work_dir: Where the script, request and reply files go.
        text_ops: Import tensorflow_text first (needed by text-in exports).

    Returns:
        Call id -> output name -> array, plus "modules" and "signatures".
    """
    script = work_dir / "fresh_process.py"
    script.write_text(FRESH_PROCESS_SCRIPT)
    request, reply = work_dir / "request.npz", work_dir / "reply.npz"
    np.savez(
        request,
        **{
            f"{call}|{signature}|{name}": value
            for call, (signature, inputs) in calls.items()
            for name, value in inputs.items()
        },
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [sys.executable, str(script), str(export_dir), str(request), str(reply)]
        + ["1" if text_ops else "0"],
        cwd=work_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(reply, allow_pickle=True) as data:  # string outputs: objects
        for key in data.files:
            call, name = key.split("|")
            out.setdefault(call, {})[name] = data[key]
    return out


@pytest.fixture(scope="session")
def validation_records(synthetic_prepared):
    """One validation record per product (8), shortest text first, as numpy.

    Returns a namespace with ``input_ids`` and ``input_mask`` int32 [8, T] (mask:
    1 = real token), ``patch_features`` float32 [8, P, D], ``patch_boxes`` float32
    [8, P, 5], ``texts`` (the description each record's ids were made from) and
    ``lengths`` (real tokens per record).
    """
    from kaleido_tf.inputs.parse import record_dataset
    from kaleido_tf.manifest import read_manifest

    folder = synthetic_prepared["validation"]
    manifest = read_manifest(folder)
    records = {}
    for r in record_dataset(folder, manifest).as_numpy_iterator():
        records.setdefault(int(r["product_id"]), r)
    records = sorted(records.values(), key=lambda r: int((r["input_ids"] > 0).sum()))
    texts = {}
    with open(folder / manifest["products_file"], encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts[row["product_id"]] = row["text"]
    input_ids = np.stack([r["input_ids"] for r in records]).astype(np.int32)
    input_mask = (input_ids != 0).astype(np.int32)
    return SimpleNamespace(
        input_ids=input_ids,
        input_mask=input_mask,
        patch_features=np.stack([r["patch_features"] for r in records]),
        patch_boxes=np.stack([r["patch_boxes"] for r in records]),
        texts=[texts[int(r["product_id"])] for r in records],
        lengths=input_mask.sum(axis=1),
        manifest=manifest,
        folder=folder,
    )


@pytest.fixture(scope="session")
def noisy_pretrain_run(tiny_pretrain_run, tmp_path_factory):
    """A run folder whose checkpoint is the tiny pretrained model plus noise.

    After 4 steps the tiny model's pooled output hardly depends on its inputs (its
    ITM logits vary by 1e-5 across records), so a 1e-5 comparison could not tell
    a right export from one that, say, ignored ``input_mask``. Noise (std 0.2) on
    every matrix makes text, mask and patches matter (match probabilities spread
    by about 0.07). Written as ``kaleido-tf pretrain`` writes a run: its
    ``config.yaml`` and ``checkpoints/ckpt-1``.
    """
    import tensorflow as tf

    from kaleido_tf.checkpoints.trained_model import load_trained_model

    run = tmp_path_factory.mktemp("runs") / "noisy"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_pretrain_run / "config.yaml", run / "config.yaml")
    model = load_trained_model(tiny_pretrain_run).model
    rng = np.random.default_rng(0)
    for weight in model.weights:
        if len(weight.shape) >= 2:
            noise = rng.normal(0.0, 0.2, weight.shape).astype(np.float32)
            weight.assign(weight + noise)
    tf.train.Checkpoint(model=model).save(str(run / "checkpoints" / "ckpt"))
    return run


@pytest.fixture(scope="session")
def retrieval_export(noisy_pretrain_run, validation_records, tmp_path_factory):
    """The noisy pretrained run exported for retrieval, with the text signature."""
    from kaleido_tf.checkpoints.trained_model import load_trained_model
    from kaleido_tf.export.saved_model_export import export_saved_model

    trained = load_trained_model(noisy_pretrain_run)
    manifest = validation_records.manifest
    out = tmp_path_factory.mktemp("exports") / "retrieval"
    result = export_saved_model(
        trained,
        "retrieval",
        out,
        validation_records.folder / manifest["vocab_file"],
        lower_case=manifest["text"]["lower_case"],
        max_seq_length=manifest["max_seq_length"],
        with_text_signature=True,
    )
    return SimpleNamespace(path=out, result=result, trained=trained)


def keras_outputs(model, config, inputs: dict[str, np.ndarray]) -> dict:
    """The Keras model's outputs on named serving inputs (positions all zero)."""
    import tensorflow as tf

    import kaleido_tf

    b, t = inputs["input_ids"].shape
    batch = kaleido_tf.dummy_batch(config, b, t)
    batch.update({k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in model(batch, training=False).items()}
