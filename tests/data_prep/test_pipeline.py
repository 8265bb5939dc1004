"""``kaleido-tf prepare`` end to end on a small file in the real Fashion-Gen layout."""

import json
import os
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from data_prep.backbones.patch_feature_extractor import PatchFeatureExtractor
from data_prep.kpg.foreground import BackgroundDifferenceCropper, extract_crop
from data_prep.pixel_variants.greyscale import grey
from kaleido_tf.cli.main import main
from kaleido_tf.inputs.parse import record_dataset
from kaleido_tf.manifest import read_manifest
from tests.fixtures.fashiongen_h5 import default_products, write_fashiongen_h5

REPO = Path(__file__).resolve().parents[2]


def prepare(h5, out, config, *extra):
    return main(
        [
            "prepare",
            "--h5",
            str(h5),
            "--out",
            str(out),
            "--config",
            str(config),
            "--backbone-weights",
            "none",
            "--quiet",
            *extra,
        ]
    )


def shard_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.tfrecord"))}


@pytest.fixture(scope="module")
def built(fashiongen_h5, tiny_prepare_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "train"
    assert prepare(fashiongen_h5, out, tiny_prepare_config) == 0
    return out


@pytest.fixture(scope="module")
def extractor():
    return PatchFeatureExtractor("mobilenet_v3_small", 32, None, seed=0)


def test_manifest_counts_and_products(built, fashiongen_h5):
    manifest = read_manifest(
        built, layout="kaleido", feature_dim=576, max_seq_length=16
    )
    counts = manifest["counts"]
    assert counts["source_rows"] == 21 and counts["source_products"] == 9
    assert counts["images"] == 20 and counts["products"] == 8  # one empty text
    assert counts["skipped_empty_text_rows"] == 1
    assert counts["repaired_texts"] == 2  # the UTF-8 text and the control char
    assert (
        manifest["backbone_weights_random"]
        and manifest["backbone"]["random_init_seed"] == 0
    )
    assert manifest["source"]["path"] == str(fashiongen_h5.resolve())
    assert "prepare" in manifest["command"] and manifest["num_patches"] == 55
    assert [s["records"] for s in manifest["shards"]] == [4, 4, 3, 4, 4, 1]
    assert not list(built.glob("*.tmp-*"))
    cats = json.loads((built / "categories.json").read_text())
    assert len(cats["category"]) == 8 and cats["category"] == sorted(cats["category"])
    products = [json.loads(line) for line in (built / "products.jsonl").open()]
    assert len(products) == 8
    assert products[2]["text"].endswith("Maison Kitsuné. Twin handles.")


def test_records_hold_the_features_of_each_crop_alone(built, fashiongen_h5, extractor):
    manifest = read_manifest(built)
    records = list(record_dataset(built, manifest))
    assert len(records) == 20
    assert len({r["image_id"].numpy() for r in records}) == 20
    cropper = BackgroundDifferenceCropper()
    with h5py.File(fashiongen_h5) as f:
        for rec in (records[0], records[13]):
            image = f["input_image"][int(rec["source_row"].numpy())]
            box = cropper.crop_box(image)
            assert rec["crop_box"].numpy().tolist() == [box.x1, box.y1, box.x2, box.y2]
            crop = extract_crop(image, box, 64)
            cells = []
            for n in (1, 2, 3, 4, 5):  # independent restatement of the grid
                edges = [int(np.floor(i * 64 / n + 0.5)) for i in range(n + 1)]
                for r in range(n):
                    for c in range(n):
                        cell = crop[edges[r] : edges[r + 1], edges[c] : edges[c + 1]]
                        cells.append(
                            cv2.resize(cell, (32, 32), interpolation=cv2.INTER_LINEAR)
                        )
            # float16 storage: ~1e-3 relative; the batch size changes float32 rounding.
            tol = dict(rtol=4e-3, atol=4e-2)
            for i in (0, 3, 10, 29, 54):
                alone = extractor(cells[i][None])[0]
                np.testing.assert_allclose(
                    rec["patch_features"].numpy()[i], alone, **tol
                )
            for k in (1, 2, 3):
                alone = extractor(np.rot90(cells[0], k)[None])[0]
                np.testing.assert_allclose(
                    rec["rotated_features"].numpy()[k - 1], alone, **tol
                )
            for j in (0, 7, 15):
                alone = extractor(grey(cells[14 + j])[None])[0]
                np.testing.assert_allclose(
                    rec["grey_features"].numpy()[j], alone, **tol
                )
            boxes = rec["patch_boxes"].numpy()
            np.testing.assert_allclose(boxes[0], [0, 1, 0, 1, 1])
            np.testing.assert_allclose(boxes[1], [0, 0.5, 0, 0.5, 0.25])


def test_text_ids_and_categories(built):
    manifest = read_manifest(built)
    vocab = (built / "vocab.txt").read_text().splitlines()
    products = {
        p["product_id"]: p for p in map(json.loads, (built / "products.jsonl").open())
    }
    cats = json.loads((built / "categories.json").read_text())
    for rec in record_dataset(built, manifest).take(6):
        p = products[int(rec["product_id"].numpy())]
        ids = rec["input_ids"].numpy()
        n = len(p["input_ids"])
        assert ids[:n].tolist() == p["input_ids"] and (ids[n:] == 0).all()
        assert vocab[ids[0]] == "[CLS]" and vocab[ids[n - 1]] == "[SEP]"
        pieces = "".join(vocab[i].removeprefix("##") for i in ids[1 : n - 1])
        plain = unicodedata.normalize("NFD", p["text"].lower())  # uncased: no accents
        letters = "".join(
            ch for ch in plain if not ch.isspace() and not unicodedata.combining(ch)
        )
        assert letters.startswith(pieces)  # truncated to T=16, never reordered
        assert cats["category"][int(rec["category_id"].numpy())] == p["category"]
        assert int(rec["pose_index"].numpy()) >= 1
        # No alignment pairs until `kaleido-tf align extract` adds them.
        assert (rec["align_word_index"].numpy() == -1).all()
        assert (rec["align_score"].numpy() == 0).all()


def test_grid8_layout(fashiongen_h5, tiny_prepare_config, tmp_path):
    out = tmp_path / "grid"
    rc = prepare(
        fashiongen_h5,
        out,
        tiny_prepare_config,
        "--set",
        "layout=grid8",
        "--set",
        "crop.method=none",
    )
    assert rc == 0
    manifest = read_manifest(out, layout="grid8")
    rec = next(iter(record_dataset(out, manifest)))
    assert rec["patch_features"].shape == (64, 576)
    assert "rotated_features" not in rec and "grey_features" not in rec
    assert rec["crop_box"].numpy().tolist() == [0, 0, 64, 64]
    np.testing.assert_allclose(
        rec["patch_boxes"].numpy()[9], [1 / 8, 2 / 8, 1 / 8, 2 / 8, 1 / 64]
    )


def test_rerun_skips_and_other_settings_need_overwrite(
    built, fashiongen_h5, tiny_prepare_config, tmp_path, capsys
):
    out = tmp_path / "copy"
    assert prepare(fashiongen_h5, out, tiny_prepare_config) == 0
    before = shard_bytes(out)
    assert before == shard_bytes(built)  # deterministic build
    capsys.readouterr()
    assert prepare(fashiongen_h5, out, tiny_prepare_config) == 0
    assert "shards_written: 0" in capsys.readouterr().out
    assert (
        prepare(fashiongen_h5, out, tiny_prepare_config, "--set", "crop.margin=0.1")
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: ") and "other settings" in err and "--overwrite" in err
    )
    assert "\n" not in err and shard_bytes(out) == before  # nothing touched
    assert (
        prepare(
            fashiongen_h5,
            out,
            tiny_prepare_config,
            "--set",
            "crop.margin=0.1",
            "--overwrite",
        )
        == 0
    )
    assert read_manifest(out)["crop"]["margin"] == 0.1


def test_two_workers_build_the_same_shards(
    built, fashiongen_h5, tiny_prepare_config, tmp_path
):
    out = tmp_path / "workers"
    assert (
        prepare(
            fashiongen_h5,
            out,
            tiny_prepare_config,
            "--num-workers",
            "2",
            "--worker-index",
            "1",
        )
        == 0
    )
    assert not (out / "manifest.json").exists()
    assert sorted(shard_bytes(out)) == [
        "train-00001-of-00006.tfrecord",
        "train-00003-of-00006.tfrecord",
        "train-00005-of-00006.tfrecord",
    ]
    assert (
        prepare(
            fashiongen_h5,
            out,
            tiny_prepare_config,
            "--num-workers",
            "2",
            "--worker-index",
            "0",
        )
        == 0
    )
    assert read_manifest(out)["counts"]["images"] == 20
    assert shard_bytes(out) == shard_bytes(built)


def test_merge_checks_every_shard_then_writes_the_manifest(
    built, fashiongen_h5, tiny_prepare_config, tmp_path, capsys
):
    # The shards of several machines copied into one folder (here: a finished
    # build without its manifest); --merge verifies them and writes the manifest.
    import shutil

    out = tmp_path / "merged"
    shutil.copytree(built, out)
    (out / "manifest.json").unlink()
    marker = out / "train-00002-of-00006.tfrecord.done.json"
    saved = marker.read_text()
    assert "sha256" in json.loads(saved)
    marker.unlink()
    assert prepare(fashiongen_h5, out, tiny_prepare_config, "--merge") == 1
    err = capsys.readouterr().err
    assert "1 of 6 shards are missing" in err and "train-00002" in err
    assert not (out / "manifest.json").exists()

    marker.write_text(saved)
    shard = out / "train-00002-of-00006.tfrecord"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF  # a damaged copy
    shard.write_bytes(bytes(data))
    assert prepare(fashiongen_h5, out, tiny_prepare_config, "--merge") == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # the one-line error after the log lines
    assert last.startswith("error: ") and "SHA-256 differs" in last
    assert str(shard) in last
    assert not (out / "manifest.json").exists()

    shutil.copy(built / shard.name, shard)
    assert prepare(fashiongen_h5, out, tiny_prepare_config, "--merge") == 0
    merged, reference = read_manifest(out), read_manifest(built)
    assert merged["shards"] == reference["shards"]
    assert merged["counts"] == reference["counts"]
    assert shard_bytes(out) == shard_bytes(built)


def test_killed_build_resumes_to_identical_shards(
    fashiongen_h5, tiny_prepare_config, tmp_path
):
    slow = ["--set", "output.records_per_shard=2", "--set", "backbone.patch_size=64"]
    reference = tmp_path / "reference"
    assert prepare(fashiongen_h5, reference, tiny_prepare_config, *slow) == 0
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "kaleido_tf.cli.main",
        "prepare",
        "--h5",
        str(fashiongen_h5),
        "--out",
        str(out),
        "--config",
        str(tiny_prepare_config),
        "--backbone-weights",
        "none",
        "--quiet",
        *slow,
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    try:
        while not list(out.glob("*.done.json")) and time.time() < deadline:
            assert proc.poll() is None, "prepare exited before writing a shard"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = len(list(out.glob("*.done.json")))
    assert 1 <= done < 11 and not (out / "manifest.json").exists()
    # Whatever was cut off is not under a final name.
    finished = {p.name.removesuffix(".done.json") for p in out.glob("*.done.json")}
    assert set(shard_bytes(out)) == finished
    assert prepare(fashiongen_h5, out, tiny_prepare_config, *slow) == 0
    assert not list(out.glob("*.tmp-*"))
    assert shard_bytes(out) == shard_bytes(reference)
    assert read_manifest(out)["counts"] == read_manifest(reference)["counts"]


def test_validation_split_reuses_train_vocab_and_categories(
    built, tmp_path, tiny_prepare_config
):
    spec = default_products()[:3]
    spec[1]["category"] = b"UNSEEN CATEGORY"
    h5 = write_fashiongen_h5(tmp_path / "fashiongen_256_256_validation.h5", spec)
    out = tmp_path / "validation"
    rc = prepare(
        h5,
        out,
        tiny_prepare_config,
        "--vocab",
        str(built / "vocab.txt"),
        "--categories",
        str(built / "categories.json"),
    )
    assert rc == 0
    manifest = read_manifest(out)
    assert manifest["split"] == "validation"
    assert manifest["counts"]["unknown_category_products"] == 1
    assert (out / "vocab.txt").read_text() == (built / "vocab.txt").read_text()
    assert manifest["shards"][0]["file"].startswith("validation-")
    ids = [int(r["category_id"].numpy()) for r in record_dataset(out, manifest)]
    assert -1 in ids and max(ids) >= 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"drop_keys": ("input_image",)}, "missing key 'input_image'"),
        ({"image_dtype": "float64"}, "dtype float64, expected uint8"),
    ],
)
def test_bad_input_fails_in_one_line_and_writes_nothing(
    tmp_path, tiny_prepare_config, capsys, kwargs, message
):
    h5 = write_fashiongen_h5(tmp_path / "bad.h5", default_products(), **kwargs)
    out = tmp_path / "out"
    assert prepare(h5, out, tiny_prepare_config) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and str(h5) in err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_unreadable_file_and_flag_errors(tmp_path, tiny_prepare_config, capsys):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    assert prepare(junk, tmp_path / "out", tiny_prepare_config) == 1
    assert "cannot be read as HDF5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # --backbone-weights must be explicit
        main(["prepare", "--h5", str(junk), "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert (
        main(
            [
                "prepare",
                "--h5",
                str(junk),
                "--out",
                str(tmp_path / "o"),
                "--config",
                "nope",
                "--backbone-weights",
                "none",
            ]
        )
        == 2
    )
    assert "config 'nope'" in capsys.readouterr().err
