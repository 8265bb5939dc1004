"""End to end on a small synthetic set: ``align train`` (few steps) -> ``align
extract`` -> records with valid pairs; extraction is deterministic and resumable;
training resumes; ``align show`` draws a picture; CLI errors are one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_prep.alignment.trainer import batch_indices, checkpoint_fingerprint
from data_prep.synthetic.fashiongen_writer import (
    main_file_name,
    write_synthetic_fashiongen,
)
from kaleido_tf.cli.main import main
from kaleido_tf.config.loader import CONFIG_ROOT
from kaleido_tf.inputs.parse import record_dataset
from kaleido_tf.manifest import read_manifest

TINY_ALIGN = """\
extends: {demo}
encoder: {{name: mobilenet_v3_small, layer: expanded_conv_7/Add, image_size: 64,
          grid_size: 0}}
decoder: {{embedding_dim: 8, lstm_units: 16, attention_dim: 8, dropout: 0.0}}
vocab: {{min_word_count: 2}}
train: {{attention_regularization: 0.1, learning_rate: 2.0e-2, batch_size: 8,
        train_steps: 40, checkpoint_every: 20}}
decode: {{beam_size: 3, max_words: 12, batch_size: 16}}
pairs: {{foreground_only: false}}
"""


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tfrecord"))}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_prepare_config):
    root = tmp_path_factory.mktemp("align")
    write_synthetic_fashiongen(root / "synth", num_products=12, seed=0, progress=False)
    prepared = root / "prepared"
    assert (
        main(
            [
                "prepare",
                "--h5",
                str(root / "synth" / main_file_name("train")),
                "--out",
                str(prepared),
                "--config",
                str(tiny_prepare_config),
                "--backbone-weights",
                "none",
                "--quiet",
            ]
        )
        == 0
    )
    config = root / "tiny_align.yaml"
    config.write_text(TINY_ALIGN.format(demo=CONFIG_ROOT / "align" / "sat_demo.yaml"))
    model_dir = root / "sat"
    train = [
        "align",
        "train",
        "--data",
        str(prepared),
        "--model-dir",
        str(model_dir),
        "--config",
        str(config),
        "--backbone-weights",
        "none",
        "--quiet",
    ]
    assert main(train) == 0
    copies = []
    for name in ("a", "b"):
        shutil.copytree(prepared, root / name)
        copies.append(root / name)
    for folder in copies:
        extract = ["align", "extract", "--data", str(folder), "--model-dir"]
        assert main([*extract, str(model_dir), "--quiet"]) == 0
    return {
        "root": root,
        "prepared": prepared,
        "model_dir": model_dir,
        "config": config,
        "train": train,
        "a": copies[0],
        "b": copies[1],
    }


def test_extraction_is_deterministic(run):
    a, b = shard_bytes(run["a"]), shard_bytes(run["b"])
    assert a and a == b
    assert a != shard_bytes(run["prepared"])  # the pairs were filled in


def test_records_hold_valid_pairs(run):
    manifest = read_manifest(run["a"])
    total = 0
    for record in record_dataset(run["a"], manifest):
        words = record["align_word_index"].numpy()
        patches = record["align_patch_index"].numpy()
        scores = record["align_score"].numpy()
        n = int((words >= 0).sum())
        assert (words[:n] >= 0).all() and (words[n:] == -1).all()
        assert (patches[:n] >= 5).all() and (patches[:n] <= 54).all()
        assert (patches[n:] == -1).all() and (scores[n:] == 0).all()
        assert (scores[:n] > 0).all() and (np.diff(scores[:n]) <= 0).all()
        assert set(words[:n].tolist()) <= set(record["word_index"].numpy().tolist())
        assert len(set(zip(words[:n].tolist(), patches[:n].tolist()))) == n
        total += n
    assert total > 0
    entry = manifest["alignment"]
    assert entry["counts"]["images"] == manifest["counts"]["images"]
    assert entry["counts"]["pairs"] == total
    assert entry["counts"]["images_with_pairs"] >= 1
    assert entry["captioner"]["fingerprint"] == checkpoint_fingerprint(
        entry["captioner"]["checkpoint"]
    )
    assert entry["pairs"]["region_threshold"] == 0.5
    assert entry["pairs"]["overlap_threshold"] == 0.5


def test_extract_resumes_per_shard(run, capsys):
    folder = run["a"]
    marker = sorted(folder.glob("*.align.json"))[0]
    shard = folder / json.loads(marker.read_text())["file"]
    before = shard_bytes(folder)
    marker.unlink()  # as if the run had been killed after this shard's rename
    extract = ["align", "extract", "--data", str(folder), "--model-dir"]
    assert main([*extract, str(run["model_dir"]), "--quiet"]) == 0
    out = capsys.readouterr().out
    shards = len(before)
    assert "shards_written: 1" in out and f"shards_skipped_done: {shards - 1}" in out
    assert shard_bytes(folder) == before
    assert shard.name in {p.name for p in folder.glob("*.tfrecord")}


def test_two_workers_extract_what_one_does(run, tmp_path, capsys):
    folder = tmp_path / "workers"
    shutil.copytree(run["prepared"], folder)
    extract = ["align", "extract", "--data", str(folder), "--model-dir"]
    extract += [str(run["model_dir"]), "--quiet", "--num-workers", "2"]
    assert main([*extract, "--worker-index", "1"]) == 0
    out = capsys.readouterr().out
    shards = sorted(p.name for p in folder.glob("*.tfrecord"))
    marked = sorted(
        p.name.removesuffix(".align.json") for p in folder.glob("*.align.json")
    )
    assert marked == shards[1::2]  # worker 1's shards only
    assert "manifest: None" in out and "alignment" not in read_manifest(folder)
    assert main([*extract, "--worker-index", "0"]) == 0
    assert "shards_written: " in capsys.readouterr().out
    # Every record once, byte for byte what a single run wrote; same counts.
    assert shard_bytes(folder) == shard_bytes(run["a"])
    assert (
        read_manifest(folder)["alignment"]["counts"]
        == read_manifest(run["a"])["alignment"]["counts"]
    )
    assert main([*extract, "--worker-index", "2"]) == 1
    assert "--worker-index 2 must be in [0, 2)" in capsys.readouterr().err


def test_training_resumes_from_its_checkpoint(run, capsys):
    assert main([*run["train"], "--set", "train.train_steps=44"]) == 0
    out = capsys.readouterr().out
    assert "steps_before: 40" in out and "steps_run: 4" in out
    assert (run["model_dir"] / "checkpoints" / "ckpt-44.index").is_file()
    for name in ("captioner.json", "caption_vocab.json", "config.yaml", "argv.txt"):
        assert (run["model_dir"] / name).is_file(), name


def test_batch_order_is_a_seeded_permutation_per_epoch():
    seen = np.concatenate([batch_indices(s, 4, 10, 3) for s in range(5)])
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:20].tolist()) == list(range(10))
    np.testing.assert_array_equal(batch_indices(3, 4, 10, 3), seen[12:16])


def test_show_writes_a_picture(run, tmp_path):
    from PIL import Image

    manifest = read_manifest(run["a"])
    record = next(iter(record_dataset(run["a"], manifest)))
    image_id = record["image_id"].numpy().decode()
    out = tmp_path / "align.png"
    assert (
        main(
            [
                "align",
                "show",
                "--data",
                str(run["a"]),
                "--image",
                image_id,
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width >= 800 and img.height >= 400


def one_line_error(capsys, argv, status):
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_cli_errors_are_one_line(run, capsys, tmp_path):
    data, model_dir = str(run["a"]), str(run["model_dir"])
    err = one_line_error(
        capsys,
        [
            "align",
            "train",
            "--data",
            str(tmp_path / "nope"),
            "--model-dir",
            str(tmp_path / "m"),
            "--backbone-weights",
            "none",
            "--quiet",
        ],
        1,
    )
    assert "manifest.json" in err
    err = one_line_error(
        capsys,
        [*run["train"], "--set", "train.learning_rat=1"],
        2,
    )
    assert "learning_rate" in err
    err = one_line_error(
        capsys,
        [
            "align",
            "train",
            "--data",
            data,
            "--model-dir",
            str(tmp_path / "m"),
            "--backbone-weights",
            str(tmp_path / "missing.h5"),
            "--quiet",
        ],
        2,
    )
    assert "missing.h5" in err
    err = one_line_error(
        capsys,
        ["align", "extract", "--data", data, "--model-dir", str(tmp_path), "--quiet"],
        1,
    )
    assert "captioner.json" in err
    err = one_line_error(
        capsys,
        [
            "align",
            "show",
            "--data",
            data,
            "--image",
            "0_9",
            "--out",
            str(tmp_path / "x.png"),
            "--model-dir",
            model_dir,
            "--quiet",
        ],
        1,
    )
    assert "0_9" in err
    # Another seed is another run: refused unless --overwrite.
    err = one_line_error(capsys, [*run["train"], "--seed", "5"], 2)
    assert "--overwrite" in err
