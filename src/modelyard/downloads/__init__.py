"""Downloads: the URL engine, Hugging Face metadata and (later) the manager that runs them."""
