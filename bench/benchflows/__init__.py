"""The benchmarked workflow (prebuilt into bench/ by `python -m bench`)."""

from benchflows._generated import *  # noqa: F403
