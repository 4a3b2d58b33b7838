"""Other dialects over OpenAI-only backends (llama.cpp, LM Studio, vLLM, OpenAI…).

* ``anthropic``: Anthropic Messages requests, answers and event streams.
* ``ollama``: Ollama's ``/api/chat``, ``/api/generate`` and ``/api/embed``, with the NDJSON
  stream and Go's JSON (``ollama_wire``).

Each is a ``relay.Translation``: a request in the client's dialect becomes the backend's, the
backend's answer or stream becomes the client's. They parse every chunk, so they serve only
the translated routes; a backend that speaks the client's dialect gets the bytes relayed.
"""
