"""Downloads (SPEC §5): the manager and its queue (``manager``, ``book``), Ollama pulls
(``ollama_pull``), the URL engine (``http_engine``, run in a ``worker`` process) and Hugging
Face metadata (``huggingface``)."""
