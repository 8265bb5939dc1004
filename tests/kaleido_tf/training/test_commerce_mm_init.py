"""A fresh CommerceMM run starts from local weights: the text stack from a Hugging
Face XLM-R folder (``--init-from``) and the image backbone from the file named by
``commerce_mm.image_encoder_weights``."""

import numpy as np

import kaleido_tf
from kaleido_tf.networks.image_encoder import save_image_encoder_weights
from kaleido_tf.training.trainer import Trainer
from tests.fixtures import pixel_prepared as fx
from tests.fixtures.hf_xlmr_checkpoint import write_hf_xlmr
from tests.kaleido_tf.training.test_step_types_commerce_mm import TINY


def test_xlmr_text_and_image_backbone_weights_load_at_start(tmp_path):
    folders = fx.pixel_prepared()
    settings = [
        *TINY,
        "model.encoder.vocab_size=1000",
        "model.encoder.max_sequence_length=12",
        "model.encoder.num_attention_heads=2",
        "commerce_mm.omni_step_probability=0.0",
    ]
    donor = kaleido_tf.build_model(kaleido_tf.load_config("commerce_mm/demo", settings))
    backbone = donor.encoder.image_encoder.backbone_network
    # Values no initialiser gives, so equality below means "loaded".
    backbone.set_weights([w + 0.5 for w in backbone.get_weights()])
    weights = save_image_encoder_weights(
        donor.encoder.image_encoder, tmp_path / "vit" / "backbone"
    )
    config = kaleido_tf.load_config(
        "commerce_mm/demo", [*settings, f"commerce_mm.image_encoder_weights={weights}"]
    )
    arrays = write_hf_xlmr(
        tmp_path / "xlmr", vocab_size=1000, hidden=16, layers=2, heads=2, inner=24,
        max_pos=14, formats=("safetensors",),
    )  # fmt: skip
    trainer = Trainer(
        config, folders["pixels"], tmp_path / "run", init_from=tmp_path / "xlmr"
    )
    encoder = trainer.model.encoder
    np.testing.assert_array_equal(
        encoder.text_embedding.embedding_table.numpy(),
        arrays["roberta.embeddings.word_embeddings.weight"],
    )
    assert trainer.bert_report.unused == [] or all(
        "pooler" in n or "lm_head" in n for n in trainer.bert_report.unused
    )
    assert trainer.extra_init is not None
    ours = encoder.image_encoder.backbone_network.get_weights()
    theirs = donor.encoder.image_encoder.backbone_network.get_weights()
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
