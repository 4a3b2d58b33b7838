"""modelyard: see, fetch, run and talk to the language models on your own machines."""

__version__ = "0.1.0"
