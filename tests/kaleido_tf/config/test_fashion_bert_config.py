"""The fashion_bert config section: strict keys and cross-field checks."""

import dataclasses

import pytest

import kaleido_tf
from kaleido_tf.config.experiment import FashionBertConfig
from kaleido_tf.errors import ConfigError


def test_paper_and_released_configs_differ_where_the_sources_do():
    paper = kaleido_tf.load_config("fashion_bert/pretrain")
    released = kaleido_tf.load_config("fashion_bert/pretrain_released")
    assert paper.system == released.system == "fashion_bert"
    assert paper.model.layout == "grid8"
    assert (
        paper.fashion_bert.num_masked_patches,
        paper.fashion_bert.max_masked_tokens,
    ) == (6, 20)
    assert (
        released.fashion_bert.num_masked_patches,
        released.fashion_bert.max_masked_tokens,
    ) == (5, 10)
    assert paper.train.optimizer.learning_rate == 2e-5
    assert released.train.optimizer.learning_rate == 1e-4
    assert paper.train.optimizer.beta_1 == 0.95
    assert not paper.fashion_bert.adaptive_weight_grad
    assert released.fashion_bert.adaptive_weight_grad
    for name, layers in (("pretrain_2layer", 2), ("pretrain_6layer", 6)):
        variant = kaleido_tf.load_config(f"fashion_bert/{name}")
        assert variant.model.encoder.num_layers == layers
        assert variant.fashion_bert.vsl_inference


def test_unknown_key_in_the_section_names_the_closest():
    with pytest.raises(ConfigError, match="fashion_bert.adaptive_los.*adaptive_loss"):
        kaleido_tf.load_config("fashion_bert/demo", ["fashion_bert.adaptive_los=none"])
    with pytest.raises(ConfigError, match="one of"):
        kaleido_tf.load_config(
            "fashion_bert/demo", ["fashion_bert.adaptive_loss=gradnorm"]
        )


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="needs system: fashion_bert"):
        kaleido_tf.load_config("kaleido_bert/demo", ["fashion_bert.mlm=true"])
    with pytest.raises(ConfigError, match="model.layout: grid8"):
        kaleido_tf.load_config("fashion_bert/demo", ["model.layout=kaleido"])
    with pytest.raises(ValueError, match="at least one"):
        FashionBertConfig(mlm=False, itm=False, mpm=False)
    with pytest.raises(ValueError, match="num_masked_patches"):
        FashionBertConfig(num_masked_patches=0)


@pytest.mark.parametrize("task", ["retrieval", "category", "subcategory", "captioning"])
def test_fine_tuning_configs_reuse_the_shared_protocol(task):
    ours = kaleido_tf.load_config(f"fashion_bert/finetune_{task}")
    theirs = kaleido_tf.load_config(f"kaleido_bert/finetune_{task}")
    assert ours.system == "fashion_bert" and ours.model.layout == "grid8"
    assert ours.finetune == theirs.finetune
    # The recipe is shared; the optimiser keeps FashionBERT's beta_1 (§3.5).
    assert ours.train.optimizer.beta_1 == 0.95
    optimizer = dataclasses.replace(ours.train.optimizer, beta_1=0.9)
    assert dataclasses.replace(ours.train, optimizer=optimizer) == theirs.train
