"""Alignment quality of AAG on the synthetic set, against a random-patch baseline.

The synthetic Fashion-Gen set knows, for every image, the pixel region of each visible
content word of its description (``*_word_regions.h5``). The bench runs the real
commands end to end: ``synth`` -> ``prepare`` (configs/data/demo_kaleido.yaml,
``--backbone-weights none``) for both splits -> ``align train`` on the training split
-> ``align extract`` on both splits, then scores the stored pairs:

- a pair ⟨raw word, patch⟩ is judged when the word is a ground-truth word of the
  image; it is *correct* when the patch overlaps the word's true region (mapped
  through the record's ``crop_box`` into crop pixels; "strict": at least half
  of the patch lies inside the region);
- precision = correct pairs / judged pairs;
- recall = ground-truth (image, word) instances, the word present in the record's
  tokens, with at least one correct pair / all such instances;
- baseline: for every (image, word) the captioner paired with m patches, m distinct
  random level 3-5 patches (seeded), scored the same way.

Usage:
    python bench/alignment_quality.py [--work DIR] [--products 320] [--seed 0]
        [--config sat_demo] [--set train.train_steps=2000]

With ``--work`` the folders are kept and every stage resumes (a rerun only redoes
what changed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kaleido_tf  # noqa: E402,F401

SPLITS = ("validation", "train")


def run_cli(argv: list[str]) -> None:
    """Runs one ``kaleido-tf`` command in-process; exits on failure."""
    from kaleido_tf.cli.main import main

    status = main(argv)
    if status != 0:
        raise SystemExit(f"`kaleido-tf {' '.join(argv)}` failed with status {status}")


def crop_mask(mask: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """A source-pixel mask mapped into the S x S crop (True where any part is)."""
    import cv2

    x1, y1, x2, y2 = (int(v) for v in box)
    h, w = mask.shape
    canvas = np.zeros((y2 - y1, x2 - x1), np.float32)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if sx2 > sx1 and sy2 > sy1:
        canvas[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = mask[sy1:sy2, sx1:sx2]
    if canvas.shape != (size, size):
        canvas = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return canvas > 0


def word_kind(word: str) -> str:
    """``item``, ``colour`` or ``part`` (the synthetic catalog's region kinds)."""
    from data_prep.synthetic.catalog import WORD_REGIONS

    kind = WORD_REGIONS.get(word, "part")
    if kind == "item":
        return "item"
    return "colour" if kind.startswith("colour:") else "part"


def evaluate(data_dir: Path, regions_h5: Path, seed: int) -> dict:
    """Scores the pairs stored in a prepared, aligned folder."""
    import h5py

    from data_prep.alignment.caption_vocab import basic_words
    from data_prep.alignment.prepared_images import PreparedImages, read_example
    from data_prep.kpg.kaleido_patches import cell_boxes
    from kaleido_tf import schema

    images = PreparedImages(data_dir)
    layout = schema.LAYOUTS["kaleido"]
    size = images.crop_size
    boxes = np.concatenate([cell_boxes(n, size) for n in layout.grids])  # [55, 4]
    candidates = np.concatenate(
        [np.arange(55)[layout.level_slice(n)] for n in (3, 4, 5)]
    )
    with h5py.File(regions_h5, "r") as f:
        rows = f["row"][:]
        words = [w.decode("latin-1") for w in f["word"][:]]
        by_row: dict[int, list[int]] = defaultdict(list)
        for i, r in enumerate(rows.tolist()):
            by_row[r].append(i)
        masks = f["mask"]
        records = []
        for shard in images.shard_files:
            for raw in images.shard_records(shard):
                ex = read_example(raw).features.feature
                row = int(ex["source_row"].int64_list.value[0])
                records.append(
                    {
                        "row": row,
                        "product_id": int(ex["product_id"].int64_list.value[0]),
                        "box": np.asarray(ex["crop_box"].int64_list.value),
                        "word_index": np.asarray(ex["word_index"].int64_list.value),
                        "pairs": list(
                            zip(
                                ex["align_word_index"].int64_list.value,
                                ex["align_patch_index"].int64_list.value,
                            )
                        ),
                        "gt": [(words[i], masks[i]) for i in by_row.get(row, [])],
                    }
                )
    rng = np.random.default_rng(seed)
    vocab = sorted({w for r in records for w, _ in r["gt"]})
    pieces_of = dict(zip(vocab, basic_words(vocab, images.lower_case)))
    texts = [images.text(r["product_id"]) for r in records]
    raw_words = basic_words(texts, images.lower_case)
    tally = {
        name: defaultdict(lambda: np.zeros(4, np.int64))
        for name in ("captioner", "baseline")
    }  # kind -> [judged, correct, correct_strict, unjudged]
    recall = {name: defaultdict(lambda: np.zeros(2, np.int64)) for name in tally}
    pair_count = 0
    for rec, raw in zip(records, raw_words):
        valid = set(rec["word_index"][rec["word_index"] >= 0].tolist())
        # raw word index -> (kind, region in crop pixels) of its ground-truth word
        truth: dict[int, tuple[str, np.ndarray, int]] = {}
        instances = []
        for k, (word, mask) in enumerate(rec["gt"]):
            pieces = pieces_of[word]
            region = crop_mask(np.asarray(mask, bool), rec["box"], size)
            hits = []
            for s in range(len(raw) - len(pieces) + 1):
                if raw[s : s + len(pieces)] == pieces:
                    hits.extend(i for i in range(s, s + len(pieces)) if i in valid)
            for i in hits:
                truth[i] = (word_kind(word), region, k)
            if hits:
                instances.append((k, word_kind(word)))
        by_word: dict[int, list[int]] = defaultdict(list)
        for w, p in rec["pairs"]:
            if w >= 0:
                by_word[int(w)].append(int(p))
                pair_count += 1
        found = {name: set() for name in tally}
        for w, patches in by_word.items():
            baseline = rng.choice(candidates, size=len(patches), replace=False)
            for name, chosen in (("captioner", patches), ("baseline", baseline)):
                if w not in truth:
                    tally[name]["all"][3] += len(chosen)
                    continue
                kind, region, k = truth[w]
                for p in chosen:
                    x1, y1, x2, y2 = boxes[p]
                    inside = region[y1:y2, x1:x2].mean()
                    correct = inside > 0
                    for key in ("all", kind):
                        tally[name][key] += [1, correct, inside >= 0.5, 0]
                    if correct:
                        found[name].add(k)
        for name in tally:
            for k, kind in instances:
                for key in ("all", kind):
                    recall[name][key] += [1, k in found[name]]
    return {
        "images": len(records),
        "pairs": pair_count,
        "images_with_pairs": sum(any(w >= 0 for w, _ in r["pairs"]) for r in records),
        "tally": {n: dict(t) for n, t in tally.items()},
        "recall": {n: dict(t) for n, t in recall.items()},
    }


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def print_report(split: str, result: dict, manifest: dict) -> None:
    """Prints one split's markdown table."""
    counts = manifest["alignment"]["counts"]
    print(
        f"\n### {split}: {result['images']} images, {result['pairs']} pairs "
        f"({result['images_with_pairs']} images with >= 1 pair; "
        f"{counts['mean_caption_words']:.1f} words per caption, "
        f"{counts['mean_matched_words']:.1f} matching the text)\n"
    )
    print(
        "| words | pairs judged | precision (captioner / random) | ratio | "
        "strict precision (captioner / random) | recall (captioner / random) |"
    )
    print("|---|---|---|---|---|---|")
    cap, base = result["tally"]["captioner"], result["tally"]["baseline"]
    rc, rb = result["recall"]["captioner"], result["recall"]["baseline"]
    for key in ("all", "item", "colour", "part"):
        if key not in cap or cap[key][0] == 0:
            continue
        c, b = cap[key], base[key]
        pc, pb = c[1] / c[0], b[1] / b[0]
        sc, sb = c[2] / c[0], b[2] / b[0]
        rec_c = rc[key][1] / max(1, rc[key][0])
        rec_b = rb[key][1] / max(1, rb[key][0])
        print(
            f"| {key} | {c[0]} | {pc:.3f} / {pb:.3f} | {_ratio(pc, pb)} | "
            f"{sc:.3f} / {sb:.3f} | {rec_c:.3f} / {rec_b:.3f} "
            f"(of {rc[key][0]}) |"
        )
    unjudged = cap.get("all", np.zeros(4))[3]
    print(f"\n{unjudged} pairs on words without a ground-truth region were not judged.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep folders here (resumable)")
    parser.add_argument("--products", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="sat_demo")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    start = time.perf_counter()
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory()
        work = Path(tmp.name)
    else:
        work = args.work
        work.mkdir(parents=True, exist_ok=True)
    timings = {}

    from data_prep.synthetic.fashiongen_writer import (
        main_file_name,
        word_regions_file_name,
        write_synthetic_fashiongen,
    )
    from kaleido_tf.manifest import read_manifest

    t = time.perf_counter()
    synth = work / "synth"
    if not all((synth / main_file_name(s)).is_file() for s in SPLITS):
        write_synthetic_fashiongen(synth, args.products, args.seed, progress=False)
    timings["synth"] = time.perf_counter() - t

    t = time.perf_counter()
    quiet = ["--quiet"]
    for split in ("train", "validation"):
        extra = []
        if split == "validation":
            extra = [
                "--vocab",
                str(work / "prepared/train/vocab.txt"),
                "--categories",
                str(work / "prepared/train/categories.json"),
            ]
        run_cli(
            ["prepare", "--h5", str(synth / main_file_name(split))]
            + ["--out", str(work / "prepared" / split), "--config", "demo_kaleido"]
            + ["--backbone-weights", "none", "--seed", str(args.seed)]
            + extra
            + quiet
        )
    timings["prepare"] = time.perf_counter() - t

    overrides = [x for s in args.set for x in ("--set", s)]
    t = time.perf_counter()
    run_cli(
        ["align", "train", "--data", str(work / "prepared/train")]
        + ["--model-dir", str(work / "sat"), "--config", args.config]
        + ["--backbone-weights", "none", "--seed", str(args.seed)]
        + overrides
        + quiet
    )
    timings["align train"] = time.perf_counter() - t

    t = time.perf_counter()
    for split in SPLITS:
        run_cli(
            ["align", "extract", "--data", str(work / "prepared" / split)]
            + ["--model-dir", str(work / "sat")]
            + quiet
        )
    timings["align extract"] = time.perf_counter() - t

    t = time.perf_counter()
    results = {
        split: evaluate(
            work / "prepared" / split,
            synth / word_regions_file_name(split),
            args.seed,
        )
        for split in SPLITS
    }
    timings["evaluate"] = time.perf_counter() - t
    total = time.perf_counter() - start

    print(
        f"\n## AAG alignment quality on the synthetic set ({args.products} products, "
        f"seed {args.seed}, config {args.config}"
        + (f" {' '.join(args.set)}" if args.set else "")
        + f"; {platform.machine()}, {os.cpu_count()} CPUs)"
    )
    for split in SPLITS:
        print_report(split, results[split], read_manifest(work / "prepared" / split))
    print(
        "\nTime: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total {total:.0f} s"
    )
    print(json.dumps({"seconds": round(total, 1)}))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
