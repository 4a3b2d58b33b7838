"""Downloads (SPEC §5): the manager and its queue (``manager``, ``book``), pulls through the
runtime that pulls (its provider's ``pull``), the URL engine (``http_engine``, run in a
``worker`` process) and Hugging Face metadata (``huggingface``)."""
