"""Downloads (SPEC §5): the manager (``manager``), its tasks and their states (``tasks``,
``states``, ``repository``), the queue and the runs (``scheduler``, ``execution``), pulls
through the runtime that pulls (its provider's ``pull``), the URL engine (``http_engine``, run
in a ``worker`` process from the ``worker_pool``) and Hugging Face metadata (``huggingface``)."""
