"""The project's error types: one line each, shown by the CLI without a traceback."""


class KaleidoError(Exception):
    """Base class of every error the CLI reports as ``error: <message>``.

    Messages say what is wrong, where (file, row, key), and what to do.
    """

    exit_code = 1


class ConfigError(KaleidoError):
    """A configuration file, override or flag is invalid (exit status 2)."""

    exit_code = 2


class DataError(KaleidoError):
    """Input or prepared data is missing, malformed or inconsistent."""


class CheckpointError(KaleidoError):
    """A checkpoint or weights file cannot be used."""


class OutputError(KaleidoError):
    """An output folder cannot be written (permissions, a full disk)."""
