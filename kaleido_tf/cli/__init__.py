"""The ``kaleido-tf`` command line."""
