"""Ollama (PROTOCOLS.md §1, §2): the provider in ``provider.py``, its model names in
``names.py`` (importable without the SDKs, as the CLI does), its pulls in ``pull.py``."""
