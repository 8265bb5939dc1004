"""Every system, listed explicitly (no registration by import side effect)."""

from kaleido_tf.systems import (
    commerce_mm,
    fashion_bert,
    image_bert,
    inter_bert,
    kaleido_bert,
)

SYSTEMS = {
    kaleido_bert.NAME: kaleido_bert,
    fashion_bert.NAME: fashion_bert,
    image_bert.NAME: image_bert,
    inter_bert.NAME: inter_bert,
    commerce_mm.NAME: commerce_mm,
}


def get_system(name: str):
    """The system module called ``name``; raises ConfigError listing valid ids."""
    from kaleido_tf.errors import ConfigError

    try:
        return SYSTEMS[name]
    except KeyError:
        raise ConfigError(
            f"unknown system {name!r}: valid systems are {sorted(SYSTEMS)}"
        ) from None


def get_recipe(config):
    """What trains ``config``: its fine-tuning task module when ``config.finetune``
    is set, else its system module. Both provide ``build_model(config)``,
    ``objectives(config)``, ``examples_per_epoch(data_dir, config)`` and
    ``build_dataset(data_dir, config, global_batch_size, start_step, training,
    input_context)``."""
    if getattr(config, "finetune", None) is not None:
        from kaleido_tf.finetuning import get_task

        return get_task(config.finetune.task)
    return get_system(config.system)
