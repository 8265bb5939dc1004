"""Configs are data: YAML files read strictly into frozen dataclasses."""

from kaleido_tf.config.loader import (
    CONFIG_ROOT,
    config_to_dict,
    load_dataclass,
    resolve_config_path,
)

__all__ = ["CONFIG_ROOT", "config_to_dict", "load_dataclass", "resolve_config_path"]
