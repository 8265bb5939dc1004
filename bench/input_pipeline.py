"""Examples/s of the Kaleido-BERT pretraining input pipeline on this machine.

Builds a synthetic prepared set (``kaleido-tf synth``'s generator, then ``prepare``
with ``configs/data/demo_kaleido.yaml --backbone-weights none``: T = 64, P = 55,
D = 576), or takes ``--data``, then times ``build_pretrain_dataset`` (all seven
tasks, AGM, 1:1 negatives) after a warm-up and prints one markdown table row.
``prepare`` extracts no alignment pairs (``kaleido-tf align extract`` adds them),
so on the synthetic set AGM falls back to random masking; the row reports the
mean pairs per record.

In the same run it times the training step of the tiny demo model
(``configs/kaleido_bert/demo.yaml``) at ``--model-batch`` and the input pipeline at
that batch too, and prints the ratio: above 1 the pipeline feeds the model faster
than the model consumes. (A BERT-base step cannot be timed on 2 CPU cores; on a GPU
node, run with ``--model-config kaleido_bert/pretrain`` and real data.)

Usage:
    python bench/input_pipeline.py [--products 120] [--batch 256] [--steps 20]
    python bench/input_pipeline.py --data prepared/train --batch 256
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import kaleido_tf  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)


def synthetic_prepared(out_dir: Path, products: int, seed: int) -> Path:
    """Writes the synthetic Fashion-Gen train split and prepares it (demo config)."""
    from data_prep.synthetic.fashiongen_writer import write_synthetic_fashiongen
    from kaleido_tf.cli.main import main

    raw = write_synthetic_fashiongen(out_dir / "raw", products, seed, progress=False)
    prepared = out_dir / "train"
    argv = [
        "prepare",
        "--h5",
        str(raw["train"]["path"]),
        "--out",
        str(prepared),
        "--config",
        str(REPO / "configs" / "data" / "demo_kaleido.yaml"),
        "--backbone-weights",
        "none",
        "--quiet",
    ]
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the result
        status = main(argv)
    if status != 0:
        raise SystemExit("prepare failed")
    return prepared


def measure_input_pipeline(
    data_dir: str | Path,
    global_batch_size: int,
    steps: int = 20,
    warmup: int = 3,
    **kwargs: Any,
) -> dict[str, Any]:
    """Times ``steps`` batches of ``build_pretrain_dataset`` after ``warmup``.

    Args:
        data_dir: A prepared folder (kaleido layout).
        global_batch_size: Examples per batch.
        steps: Timed batches.
        warmup: Untimed batches first (tracing, shuffle windows, thread pools).
        **kwargs: More ``build_pretrain_dataset`` arguments.

    Returns:
        ``examples_per_s``, ``batches_per_s``, ``seconds``, ``startup_s`` (build
        and warm-up) and the batch shapes ``T``, ``P``, ``D``.
    """
    from kaleido_tf.inputs.pipeline import build_pretrain_dataset

    t0 = time.perf_counter()
    ds = build_pretrain_dataset(data_dir, global_batch_size, **kwargs)
    it = iter(ds)
    for _ in range(warmup):
        batch = next(it)
    t1 = time.perf_counter()
    for _ in range(steps):
        batch = next(it)
    t2 = time.perf_counter()
    t = int(batch["input_ids"].shape[1])
    p, d = (int(x) for x in batch["patch_features"].shape[1:])
    return {
        "examples_per_s": steps * global_batch_size / (t2 - t1),
        "batches_per_s": steps / (t2 - t1),
        "seconds": t2 - t1,
        "startup_s": t1 - t0,
        "T": t,
        "P": p,
        "D": d,
    }


def measure_model_steps(
    data_dir: str | Path, config_name: str, batch: int, steps: int = 10
) -> dict[str, Any]:
    """Times the shared trainer's step on ``data_dir`` (after a traced warm-up)."""
    import tensorflow as tf

    from kaleido_tf.training.trainer import Trainer

    config = kaleido_tf.load_config(
        config_name, [f"train.global_batch_size={batch}", "train.max_steps=1000"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, data_dir, tmp)
        iterator = iter(trainer.dataset(0))

        @tf.function
        def run(n):
            for _ in tf.range(n):
                trainer.strategy.run(trainer._replica_step, args=(next(iterator),))

        run(tf.constant(2))
        t = time.perf_counter()
        run(tf.constant(steps))
        seconds = time.perf_counter() - t
    return {"steps_per_s": steps / seconds, "examples_per_s": steps * batch / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="prepared folder (default: synth)")
    parser.add_argument("--products", type=int, default=120, help="synthetic size")
    parser.add_argument("--batch", type=int, default=256, help="global batch size")
    parser.add_argument("--steps", type=int, default=20, help="timed batches")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches")
    parser.add_argument("--masking", choices=("agm", "random"), default="agm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-config", default="kaleido_bert/demo")
    parser.add_argument("--model-batch", type=int, default=32)
    parser.add_argument("--model-steps", type=int, default=10)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            t = time.perf_counter()
            data = synthetic_prepared(Path(tmp), args.products, args.seed)
            print(
                f"synthetic set prepared in {time.perf_counter() - t:.0f} s",
                file=sys.stderr,
            )
        from kaleido_tf.inputs.parse import record_dataset
        from kaleido_tf.manifest import read_manifest

        manifest = read_manifest(data)
        records = sum(s["records"] for s in manifest["shards"])
        sample = record_dataset(data, manifest).take(256)
        pairs = [
            int((r["align_word_index"] >= 0).sum()) for r in sample.as_numpy_iterator()
        ]
        r = measure_input_pipeline(
            data,
            args.batch,
            steps=args.steps,
            warmup=args.warmup,
            masking=args.masking,
            seed=args.seed,
        )
        same_batch = measure_input_pipeline(
            data,
            args.model_batch,
            steps=args.steps,
            warmup=args.warmup,
            masking=args.masking,
            seed=args.seed,
        )
        model = measure_model_steps(
            data, args.model_config, args.model_batch, args.model_steps
        )
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(
        "| machine | records | pairs/record | batch | T / P / D | tasks, masking "
        "| examples/s |\n|---|---|---|---|---|---|---|"
    )
    print(
        f"| {platform.machine()}, {cores} CPU cores (load {load:.1f}) | {records} | "
        f"{sum(pairs) / max(len(pairs), 1):.1f} | {args.batch} | "
        f"{r['T']} / {r['P']} / {r['D']} | all 7, {args.masking} | "
        f"{r['examples_per_s']:.0f} ({args.steps} batches after {args.warmup} "
        f"warm-up, {r['startup_s']:.1f} s start-up) |"
    )
    ratio = same_batch["examples_per_s"] / model["examples_per_s"]
    print()
    print(
        "| batch | input pipeline examples/s | training step examples/s "
        f"({args.model_config}) | ratio |\n|---|---|---|---|"
    )
    print(
        f"| {args.model_batch} | {same_batch['examples_per_s']:.0f} | "
        f"{model['examples_per_s']:.1f} ({model['steps_per_s']:.2f} steps/s) | "
        f"{ratio:.1f}x |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
