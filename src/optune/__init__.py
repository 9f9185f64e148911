"""optune: efficient online preference tuning (OPTune) of language models."""

__version__ = "0.1.0"
