"""The gateway's engine: one endpoint for every model (SPEC §13, issue #20).

* ``wire``: the three dialects (OpenAI, Anthropic, Ollama) — framing, usage, error shapes.
* ``metering``: what accounting needs from a relayed stream, without parsing every chunk.
* ``asgi``: plain ASGI on the hot path — body, answer, and the client's hang-up.
* ``relay``: forwards a request to a model server and streams its bytes back.
* ``translate``: Anthropic Messages and Ollama's API over OpenAI-only backends.
* ``scheduler``: the one owner of what is loaded — queue, admission, eviction, TTL.
* ``names``, ``backend``, ``policies``, ``service``: the catalog's models as the scheduler's
  and the clients' — names, loads through the runtimes, settings, the request path that
  ``api/routes/gateway.py`` puts on modelyard's port.
"""
