"""``kaleido-tf evaluate gallery``: a Karpathy split against a prepared folder,
checked against an independent all-pairs model call."""

import json

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from data_prep.text.wordpiece import WordPieceEncoder, read_vocab
from kaleido_tf.checkpoints.trained_model import load_trained_model
from kaleido_tf.cli.main import main
from kaleido_tf.evaluation.full_gallery import gallery_metrics
from kaleido_tf.inputs.parse import record_dataset
from kaleido_tf.manifest import read_manifest

CAPTIONS = [
    "red wool sweater",
    "black leather boots",
    "a blue denim jacket",
    "white cotton shirt",
    "green silk dress",
    "grey wool coat",
    "short black skirt",
    "brown leather bag",
    "long red dress",
    "blue cotton jeans",
]


def write_split(path, image_ids, extra_test=()):
    images = [
        {
            "filename": f"{key}.jpg",
            "imgid": i,
            "split": "test",
            "sentences": [
                {
                    "raw": CAPTIONS[(2 * i + j) % len(CAPTIONS)],
                    "tokens": [],
                    "sentid": 2 * i + j,
                }
                for j in range(2)
            ],
        }
        for i, key in enumerate([*image_ids, *extra_test])
    ]
    images.append({**images[0], "filename": "other.jpg", "split": "train"})
    path.write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    return path


@pytest.fixture(scope="module")
def sharp_run(tiny_pretrain_run, tmp_path_factory):
    """The tiny pretraining run with its ITM kernel scaled by 1e4: the barely
    trained model scores all pairs alike, which would make ranks hinge on
    rounding."""
    import shutil

    trained = load_trained_model(tiny_pretrain_run)
    for w in trained.model.heads["itm"].weights:  # kernel x 1e4, bias 0
        w.assign(w * 1e4 if len(w.shape) == 2 else tf.zeros_like(w))
    run = tmp_path_factory.mktemp("sharp_run")
    shutil.copy(tiny_pretrain_run / "config.yaml", run / "config.yaml")
    tf.train.Checkpoint(model=trained.model).save(str(run / "checkpoints" / "ckpt"))
    return run


@pytest.fixture(scope="module")
def records(synthetic_prepared):
    data = synthetic_prepared["validation"]
    out = {}
    for r in record_dataset(data, read_manifest(data)).take(4):
        out[r["image_id"].numpy().decode()] = r
    return data, out


def test_gallery_metrics_equal_direct_model_calls(records, sharp_run, tmp_path, capsys):
    data, recs = records
    keys = list(recs)
    split = write_split(tmp_path / "dataset_flickr30k.json", keys)
    out = tmp_path / "results" / "gallery.json"
    argv = ["evaluate", "gallery", "--run", str(sharp_run), "--data", str(data)]
    argv += ["--karpathy", str(split), "--batch-size", "3", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    got = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "text_to_image" in printed and "RSUM" in printed

    # Independent: every (caption, image) pair in one VLModel call.
    trained = load_trained_model(sharp_run)
    config = trained.config
    encoder = WordPieceEncoder(
        read_vocab(data / "vocab.txt"), config.model.encoder.max_sequence_length
    )
    texts = [
        CAPTIONS[(2 * i + j) % len(CAPTIONS)]
        for i in range(len(keys))
        for j in range(2)
    ]
    ids = encoder.encode(texts)[0].astype(np.int32)
    c, i = np.divmod(np.arange(len(texts) * len(keys)), len(keys))
    feats = np.stack([recs[k]["patch_features"].numpy() for k in keys])
    boxes = np.stack([recs[k]["patch_boxes"].numpy() for k in keys])
    batch = {
        "input_ids": tf.constant(ids[c]),
        "input_mask": tf.constant((ids[c] != encoder.pad_id).astype(np.int32)),
        "segment_ids": tf.zeros(ids[c].shape, tf.int32),
        "patch_features": tf.constant(feats[i]),
        "patch_boxes": tf.constant(boxes[i]),
        "patch_mask": tf.ones(feats[i].shape[:2], tf.int32),
    }
    for key, value in kaleido_tf.dummy_batch(config, batch_size=1).items():
        batch.setdefault(key, tf.zeros([len(c), *value.shape[1:]], value.dtype))
    logits = trained.model(batch, training=False)["itm_logits"].numpy()
    scores = (logits[:, 1] - logits[:, 0]).reshape(len(texts), len(keys))
    # Distinct scores lie further apart than float32 rounding (~1e-6 at |s| ~ 7)
    # could move them, so the ranks cannot hinge on batch composition.
    assert np.diff(np.sort(scores.ravel())).min() > 1e-5
    expected = gallery_metrics(scores, np.repeat(np.arange(len(keys)), 2))
    assert got["captions"] == 8 and got["images"] == 4 and got["split"] == "test"
    for d in ("text_to_image", "image_to_text"):
        for k in (1, 5, 10):
            assert got[d][f"rank@{k}"] == pytest.approx(expected[d][f"rank@{k}"])
        assert got[d]["mean_rank"] == pytest.approx(expected[d]["mean_rank"])


def test_missing_images_are_listed(records, sharp_run, tmp_path, capsys):
    data, recs = records
    split = write_split(tmp_path / "split.json", list(recs)[:2], ["no_such_image"])
    argv = ["evaluate", "gallery", "--run", str(sharp_run), "--data", str(data)]
    assert main([*argv, "--karpathy", str(split), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_image" in err[0] and "1 of the 3" in err[0]


def test_too_few_images_for_the_folds(records, sharp_run, tmp_path, capsys):
    data, recs = records
    split = write_split(tmp_path / "split.json", list(recs))
    argv = ["evaluate", "gallery", "--run", str(sharp_run), "--data", str(data)]
    assert main([*argv, "--karpathy", str(split), "--folds", "5", "--quiet"]) == 1
    assert "--folds 1" in capsys.readouterr().err
