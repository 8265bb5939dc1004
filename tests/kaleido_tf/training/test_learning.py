"""A learning test that can fail: ITM accuracy on held-out pairs rises above chance."""

import kaleido_tf
from kaleido_tf.evaluation.pretraining import evaluate_pretraining
from kaleido_tf.training.trainer import Trainer

ITM_ONLY = [
    "model.encoder.hidden_size=32",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=64",
    "model.encoder.num_layers=2",
    "model.encoder.max_sequence_length=24",
    "model.encoder.output_dropout=0.0",
    "model.encoder.attention_dropout=0.0",
    "model.encoder.feature_dropout=0.0",
    "tasks.mlm=false",
    "tasks.rr=false",
    "tasks.jps=false",
    "tasks.cp=false",
    "tasks.g2cm=false",
    "tasks.b2cm=false",
    "train.global_batch_size=32",
    "train.max_steps=300",
    "train.log_every_steps=100",
    "train.checkpoint_every_steps=1000",
    "train.optimizer.warmup_steps=20",
    "train.optimizer.learning_rate=1e-3",
]


def test_itm_accuracy_on_held_out_pairs_rises_well_above_chance(
    synthetic_prepared, tmp_path
):
    config = kaleido_tf.load_config("kaleido_bert/demo", ITM_ONLY)
    data = synthetic_prepared["train"]
    trainer = Trainer(config, data, tmp_path / "run")
    # Held-out pairs: the negatives are drawn with another seed than in training,
    # so each image meets mismatched texts it was never trained against.
    held_out_seed = config.train.seed + 1000
    before = evaluate_pretraining(trainer.model, config, data, seed=held_out_seed)
    trainer.fit(progress=False, log=lambda m: None)
    after = evaluate_pretraining(trainer.model, config, data, seed=held_out_seed)
    print("held-out ITM accuracy", before["itm_accuracy"], "->", after["itm_accuracy"])
    assert before["examples"] == after["examples"] >= 200
    assert 0.3 <= before["itm_accuracy"] <= 0.7
    assert after["itm_accuracy"] >= 0.65
    assert after["itm_loss"] < before["itm_loss"]
