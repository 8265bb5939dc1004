"""Downstream tasks of Kaleido-BERT §4.2, each trained by the shared Trainer.

A task module provides what a system module provides to the trainer
(``build_model``, ``objectives``, ``examples_per_epoch``, ``build_dataset``); its
encoder is the configured system's (``encoder_kwargs``), so every system reuses them.
"""

from kaleido_tf.finetuning import captioning_task, category_task, retrieval_task

TASKS = {
    "retrieval": retrieval_task,
    "category": category_task,
    "subcategory": category_task,
    "captioning": captioning_task,
}


def get_task(name: str):
    """The task module called ``name``; raises ConfigError listing valid ids."""
    from kaleido_tf.errors import ConfigError

    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(
            f"unknown fine-tuning task {name!r}: valid tasks are {sorted(TASKS)}"
        ) from None
