"""AdamW, linear warm-up and linear decay from official.modeling.optimization."""

from __future__ import annotations

from official.modeling import optimization

from kaleido_tf.config.experiment import OptimizerConfig
from kaleido_tf.errors import ConfigError

# BERT's exclusions: no weight decay on LayerNorm parameters and biases (F-Q16).
EXCLUDE_FROM_WEIGHT_DECAY = ["LayerNorm", "layer_norm", "bias"]


def warmup_steps(config: OptimizerConfig, total_steps: int) -> int:
    """Warm-up length in steps (``warmup_steps`` or ``warmup_fraction`` of all)."""
    if config.warmup_fraction:
        return int(round(config.warmup_fraction * total_steps))
    return config.warmup_steps


def build_optimizer(config: OptimizerConfig, total_steps: int):
    """The optimizer and its learning-rate schedule.

    The schedule is BERT's: a linear decay from ``learning_rate`` at step 0 to
    ``end_learning_rate`` at ``total_steps``, overridden by a linear ramp from 0
    during warm-up. Gradient clipping is left to the training loop, which clips the
    all-reduced gradient (the legacy optimizer would clip per replica).

    Returns:
        (optimizer, learning_rate_schedule).

    Raises:
        ConfigError: Warm-up as long as the run: tf-models' warm-up ramps to the
            decayed rate at its end, which is then ``end_learning_rate`` (0), so the
            whole run would have a zero learning rate.
    """
    steps = warmup_steps(config, total_steps)
    if steps > 0 and steps >= total_steps:
        raise ConfigError(
            f"train.optimizer warm-up of {steps} steps is not shorter than the "
            f"{total_steps} steps of the run: the learning rate would stay 0; "
            "lower train.optimizer.warmup_steps (or warmup_fraction)"
        )
    params = {
        "optimizer": {
            "type": "adamw",
            "adamw": {
                "weight_decay_rate": config.weight_decay_rate,
                "beta_1": config.beta_1,
                "beta_2": config.beta_2,
                "epsilon": config.epsilon,
                "exclude_from_weight_decay": EXCLUDE_FROM_WEIGHT_DECAY,
                "gradient_clip_norm": 0.0,
            },
        },
        "learning_rate": {
            "type": "polynomial",
            "polynomial": {
                "initial_learning_rate": config.learning_rate,
                "decay_steps": max(1, total_steps),
                "end_learning_rate": config.end_learning_rate,
                "power": 1.0,
            },
        },
    }
    if steps > 0:
        params["warmup"] = {
            "type": "linear",
            "linear": {"warmup_steps": steps, "warmup_learning_rate": 0.0},
        }
    factory = optimization.OptimizerFactory(optimization.OptimizationConfig(params))
    schedule = factory.build_learning_rate()
    return factory.build_optimizer(schedule), schedule
