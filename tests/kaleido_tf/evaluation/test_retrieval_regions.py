"""A region folder (ImageBERT) is scored on saved candidate lists like a patch
folder: visual tokens through ``visual_inputs``, padding regions masked out."""

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.evaluation.retrieval import score_retrieval_lists
from kaleido_tf.evaluation.retrieval_lists import (
    DIRECTIONS,
    RetrievalLists,
    build_retrieval_lists,
)
from kaleido_tf.models.vl_model import VLModel
from kaleido_tf.systems.base import config_encoder_kwargs
from tests.conftest import TINY_MODEL
from tests.fixtures.region_prepared import VOCAB_SIZE, write_region_prepared

R, D = 36, 8


@pytest.fixture(scope="module")
def region_folder(tmp_path_factory):
    return write_region_prepared(
        tmp_path_factory.mktemp("regions") / "train",
        num_products=6,
        layout="regions36",
        feature_dim=D,
        max_seq_length=12,
    )


def region_itm_model():
    config = kaleido_tf.load_config(
        "kaleido_bert/finetune_retrieval",
        [
            *TINY_MODEL,
            "model.layout=regions36",
            f"model.patch_feature_dim={D}",
            f"model.encoder.vocab_size={VOCAB_SIZE}",
        ],
    )
    encoder = config_encoder_kwargs(config)
    encoder["level_sizes"] = [R]  # the R regions as one level
    model = VLModel(
        encoder=encoder,
        heads={"itm": {"type": "classification", "num_classes": 2}},
        name="region_itm",
    )
    model(kaleido_tf.dummy_batch(config), training=False)
    for w in model.heads["itm"].weights:  # score gaps well above rounding
        w.assign(w * 100.0)
    return config, model


def test_region_lists_equal_direct_calls_with_the_region_mask(region_folder, tmp_path):
    data = region_folder["dir"]
    lists = build_retrieval_lists(data, 4, 3, seed=0)
    path = lists.save(tmp_path / "lists.json")
    lists = RetrievalLists.load(path, data)  # the saved file, as the CLI reads it
    config, model = region_itm_model()
    logits = score_retrieval_lists(model, config, data, lists, batch_size=5)
    records = region_folder["records"]
    for d in DIRECTIONS:
        pairs = list(lists.pairs(d))
        ids = np.stack([records[f"{p.text_product}_1"]["input_ids"] for p in pairs])
        images = [records[p.image_id] for p in pairs]
        n = np.array([r["num_regions"] for r in images])
        batch = {
            "input_ids": tf.constant(ids.astype(np.int32)),
            "input_mask": tf.constant((ids != 0).astype(np.int32)),
            "segment_ids": tf.zeros(ids.shape, tf.int32),
            "patch_features": tf.constant(
                np.stack([r["region_features"] for r in images])
                .astype(np.float16)
                .astype(np.float32)
            ),
            "patch_boxes": tf.constant(
                np.stack([r["region_locations"] for r in images])
            ),
            "patch_mask": tf.constant(
                (np.arange(R)[None] < n[:, None]).astype(np.int32)
            ),
        }
        for key, value in kaleido_tf.dummy_batch(config, batch_size=1).items():
            batch.setdefault(key, tf.zeros([len(pairs), *value.shape[1:]], value.dtype))
        direct = model(batch, training=False)["itm_logits"].numpy()
        expected = np.zeros_like(logits[d])
        for pair, row in zip(pairs, direct):
            expected[pair.query_index, pair.candidate_index] = row
        np.testing.assert_allclose(logits[d], expected, rtol=1e-5, atol=1e-5)
        # Without the mask the padding regions (zeros) would be attended to.
        batch["patch_mask"] = tf.ones([len(pairs), R], tf.int32)
        unmasked = model(batch, training=False)["itm_logits"].numpy()
        assert n.max() < R and np.abs(unmasked - direct).max() > 1e-4
