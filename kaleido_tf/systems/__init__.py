"""Every system, listed explicitly (no registration by import side effect)."""

from kaleido_tf.systems import kaleido_bert

SYSTEMS = {kaleido_bert.NAME: kaleido_bert}


def get_system(name: str):
    """The system module called ``name``; raises ConfigError listing valid ids."""
    from kaleido_tf.errors import ConfigError

    try:
        return SYSTEMS[name]
    except KeyError:
        raise ConfigError(
            f"unknown system {name!r}: valid systems are {sorted(SYSTEMS)}"
        ) from None
