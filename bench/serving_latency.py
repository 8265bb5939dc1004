"""Latency of the exported retrieval SavedModel on CPU: padded vs variable text length.

Exports a model built from ``--config`` (default ``kaleido_bert/demo``; random
weights, which do not change latency) with ``kaleido-tf export``'s code, loads the
SavedModel as a server would (``tf.saved_model.load``) and times its ``retrieval``
signature on:

- one query-candidate pair (B = 1);
- a 101-candidate batch for image-to-text retrieval (one image, 101 texts of
  different lengths) and for text-to-image retrieval (one text, 101 images).

Each case runs twice in the same loop, alternating call by call: texts padded to
the maximum length T (``--max-length``, default the encoder's
``max_sequence_length``), and padded only to the longest text of the request
(FashionBERT's variable sequence length, VSL). It prints p50 / p99 latency of each
and the ratio variable / padded (below 1: VSL is faster). Text lengths come from
``--data``'s ``products.jsonl`` (real WordPiece lengths) or, without it, uniformly
from [8, T].

Usage:
    python bench/serving_latency.py [--repeats 200] [--data prepared/validation]
    python bench/serving_latency.py --config kaleido_bert/pretrain --repeats 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import kaleido_tf  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from kaleido_tf import constants  # noqa: E402

CANDIDATES = 101  # 1 positive + 100 negatives (Fashion-Gen retrieval protocol)


def export_random_model(config_name: str, overrides: list[str], out_dir: Path):
    """Builds ``config_name``'s model with random weights and exports it.

    Returns:
        (config, export path).
    """
    from kaleido_tf.checkpoints.trained_model import TrainedModel
    from kaleido_tf.export.saved_model_export import export_saved_model

    config = kaleido_tf.load_config(config_name, overrides)
    model = kaleido_tf.build_model(config)
    vocab = out_dir / "vocab.txt"
    words = [f"w{i}" for i in range(config.model.encoder.vocab_size - 5)]
    vocab.write_text("\n".join(list(constants.SPECIAL_TOKENS) + words) + "\n")
    path = out_dir / "saved_model"
    trained = TrainedModel(config, model, "random initialisation", 0)
    export_saved_model(trained, "retrieval", path, vocab)
    return config, path


def text_lengths(data: Path | None, max_length: int, count: int, rng) -> Any:
    """``count`` text lengths (incl. [CLS], [SEP]), capped at ``max_length``."""
    import numpy as np

    if data is None:
        return rng.integers(8, max_length + 1, count)
    manifest = json.loads((data / "manifest.json").read_text())
    with open(data / manifest["products_file"], encoding="utf-8") as f:
        real = np.array([len(json.loads(line)["input_ids"]) for line in f])
    return np.minimum(rng.choice(real, count), max_length)


def make_request(rng, lengths, images: dict, t: int) -> dict:
    """Named inputs for texts of ``lengths`` (padded to ``t``) and fixed images.

    Args:
        rng: numpy Generator.
        lengths: int [n]; real tokens of each text (one text repeats when the
            images are many: text-to-image).
        images: ``patch_features`` float32 [B, P, D] and ``patch_boxes`` float32
            [B, P, 5] tensors (one image repeated when the texts are many:
            image-to-text). Shared between requests: image values do not change
            the latency, and 101 x 55 x 2048 floats per request add up.
        t: The padded text length.
    """
    import numpy as np
    import tensorflow as tf

    b = int(images["patch_features"].shape[0])
    lengths = np.resize(lengths, b)
    ids = rng.integers(5, 100, (b, t)).astype(np.int32)
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask == 1, ids, 0).astype(np.int32)
    return {"input_ids": tf.constant(ids), "input_mask": tf.constant(mask), **images}


def make_images(rng, b: int, p: int, d: int) -> dict:
    """``patch_features`` and ``patch_boxes`` of ``b`` copies of one random image."""
    import numpy as np
    import tensorflow as tf

    features = rng.normal(size=(1, p, d)).astype(np.float32)
    boxes = rng.random((1, p, 5)).astype(np.float32)
    return {
        "patch_features": tf.constant(np.repeat(features, b, axis=0)),
        "patch_boxes": tf.constant(np.repeat(boxes, b, axis=0)),
    }


def measure(signature, requests: dict[str, list[dict]], warmup: int) -> dict:
    """Times each request list, alternating between the lists call by call.

    Returns:
        name -> latencies in milliseconds (numpy array).
    """
    import numpy as np

    names = list(requests)
    n = len(requests[names[0]])
    for i in range(warmup):
        for name in names:
            signature(**requests[name][i % n])["match_probability"].numpy()
    times = {name: [] for name in names}
    for i in range(n):
        for name in names:
            t0 = time.perf_counter()
            signature(**requests[name][i])["match_probability"].numpy()
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: np.array(v) for name, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="kaleido_bert/demo")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-length", type=int, help="T padded (default: encoder)")
    parser.add_argument("--data", type=Path, help="prepared folder for text lengths")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per case")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        config, path = export_random_model(args.config, args.set, Path(tmp))
        export_s = time.perf_counter() - t0
        signature = tf.saved_model.load(str(path)).signatures["retrieval"]
        from kaleido_tf import schema

        t = args.max_length or config.model.encoder.max_sequence_length
        p = schema.get_layout(config.model.layout).num_patches
        d = config.model.patch_feature_dim
        n = args.repeats
        cases = {
            "1 pair": (1, 1),
            f"{CANDIDATES} candidates, image to text": (CANDIDATES, 1),
            f"{CANDIDATES} candidates, text to image": (1, CANDIDATES),
        }
        rows = []
        for case, (num_texts, num_images) in cases.items():
            lengths = [text_lengths(args.data, t, num_texts, rng) for _ in range(n)]
            images = make_images(rng, max(num_texts, num_images), p, d)
            padded = [make_request(rng, x, images, t) for x in lengths]
            variable = [
                {
                    k: (v[:, : int(x.max())] if k.startswith("input_") else v)
                    for k, v in request.items()
                }
                for x, request in zip(lengths, padded)
            ]
            times = measure(
                signature, {"padded": padded, "variable": variable}, args.warmup
            )
            mean_t = float(np.mean([x.max() for x in lengths]))
            rows.append((case, num_texts, num_images, mean_t, times))
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    enc = config.model.encoder
    print(
        f"{args.config}: H={enc.hidden_size}, {enc.num_layers} layers, P={p}, D={d}, "
        f"padded T={t}; random weights; exported in {export_s:.0f} s; "
        f"{platform.machine()}, {cores} CPU cores (load {load:.1f}), "
        f"TensorFlow {tf.__version__}; {n} timed calls per case after "
        f"{args.warmup} warm-up, padded and variable alternating"
    )
    print()
    print(
        "| request | B | T variable (mean) | padded p50 / p99 ms "
        "| variable p50 / p99 ms | variable / padded p50 | p99 |"
    )
    print("|---|---|---|---|---|---|---|")
    for case, num_texts, num_images, mean_t, times in rows:
        pad, var = times["padded"], times["variable"]
        p50 = (np.percentile(pad, 50), np.percentile(var, 50))
        p99 = (np.percentile(pad, 99), np.percentile(var, 99))
        print(
            f"| {case} | {max(num_texts, num_images)} | {mean_t:.1f} of {t} | "
            f"{p50[0]:.2f} / {p99[0]:.2f} | {p50[1]:.2f} / {p99[1]:.2f} | "
            f"{p50[1] / p50[0]:.2f}x | {p99[1] / p99[0]:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
