"""A headless generative instrument: Csound plays, Python composes ahead of it."""

__version__ = "0.1.0"
