"""InterBERT as a system: training steps, text-only path, gallery scorer."""

import logging

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.evaluation.full_gallery import PairScorer
from kaleido_tf.inputs.inter_bert_pipeline import InterBertPretrainInputs
from kaleido_tf.inputs.pipeline import make_dataset
from kaleido_tf.systems import inter_bert
from kaleido_tf.training.trainer import Trainer
from tests.fixtures.region_prepared import write_region_prepared
from tests.kaleido_tf.systems.test_inter_bert import PIPE, config


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory):
    return write_region_prepared(tmp_path_factory.mktemp("ibt") / "train")["dir"]


def inputs_dataset(inputs):
    return make_dataset(inputs, 16, training=False)


def test_a_few_trainer_steps_reduce_the_loss(region_dir, tmp_path, caplog):
    cfg = config(
        "train.global_batch_size=16",
        "train.max_steps=12",
        "train.log_every_steps=6",
        "train.checkpoint_every_steps=1000",
        "train.optimizer.learning_rate=3e-3",
    )
    with caplog.at_level(logging.INFO, logger="kaleido_tf.systems.inter_bert"):
        trainer = Trainer(cfg, region_dir, tmp_path / "run")
    assert "parameters" in caplog.text
    history = trainer.fit(progress=False, log=lambda m: None)
    first, last = history[0], history[-1]
    assert last["step"] == 12
    assert last["total_loss"] < first["total_loss"]
    assert last["msm_loss"] < first["msm_loss"]


def test_text_only_path_and_gallery_scorer_agree_with_the_model(region_dir):
    cfg = config()
    model = kaleido_tf.build_model(cfg)
    inputs = InterBertPretrainInputs(region_dir, corrupt=False, **PIPE)
    batch = next(iter(inputs_dataset(inputs)))
    # Text-only: the same as the encoder on the text keys alone, and independent
    # of any image.
    cls = inter_bert.text_cls_embeddings(
        model, batch["input_ids"], batch["input_mask"], batch_size=5
    )
    direct = model.encoder(
        {k: batch[k] for k in ("input_ids", "input_mask", "segment_ids")},
        training=False,
    )["text_cls_output"]
    np.testing.assert_allclose(cls, direct.numpy(), atol=1e-5)
    # Gallery scorer: pairs (caption i, image j) score as the model on that pair.
    scorer = PairScorer(
        model,
        batch["input_ids"],
        batch["input_mask"],
        batch["patch_features"],
        batch["patch_boxes"],
        batch["patch_mask"],
    )
    ci, ii = np.array([0, 3, 5]), np.array([2, 3, 0])
    margins = scorer(ci, ii)
    pair = {
        "input_ids": tf.gather(batch["input_ids"], ci),
        "input_mask": tf.gather(batch["input_mask"], ci),
        "segment_ids": tf.gather(batch["segment_ids"], ci),
        "patch_features": tf.gather(batch["patch_features"], ii),
        "patch_boxes": tf.gather(batch["patch_boxes"], ii),
        "patch_mask": tf.gather(batch["patch_mask"], ii),
    }
    logits = model(pair, training=False)["itm_logits"].numpy()
    np.testing.assert_allclose(margins, logits[:, 1] - logits[:, 0], atol=1e-5)
    retrieval = inter_bert.build_retrieval_model(cfg)
    retrieval(kaleido_tf.dummy_batch(cfg), training=False)
    assert set(retrieval.heads) == {"itm"}
