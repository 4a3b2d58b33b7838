"""The clients a running modelyard keeps for answering: the official SDKs' clients, one per
endpoint and key, and one plain HTTP client for runtimes spoken to without an SDK.

The ``openai`` clients share one HTTP client: each would otherwise build its own TLS
context, about 30 ms, on the way to the first token of the first answer from every new
endpoint (and a GGUF model gets a new one each time it starts). ``warm`` builds it, and
loads the SDK's chat modules, before the first answer needs them (~0.2 s, once).
"""

from __future__ import annotations

import threading

import anthropic
import httpx
import ollama
import openai


def with_v1(base_url: str) -> str:
    """OpenAI-compatible base URLs are given with or without their ``/v1``."""
    return base_url if base_url.endswith("/v1") else f"{base_url}/v1"


class Clients:
    """Clients kept per endpoint and key; closed together at shutdown."""

    def __init__(self, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.connect_s = connect_timeout_s
        self.read_s = read_timeout_s
        self._openai_http: openai.DefaultAsyncHttpxClient | None = None
        self._openai_http_lock = threading.Lock()
        self._openai: dict[tuple[str, str, int], openai.AsyncOpenAI] = {}
        self._anthropic: dict[tuple[str, str, int], anthropic.AsyncAnthropic] = {}
        self._ollama: dict[str, ollama.AsyncClient] = {}
        self._http: httpx.AsyncClient | None = None

    @property
    def warmed(self) -> bool:
        """Whether the shared HTTP client of the ``openai`` clients exists yet."""
        return self._openai_http is not None

    def openai_client(self, base_url: str, api_key: str, retries: int) -> openai.AsyncOpenAI:
        key = (base_url, api_key, retries)
        client = self._openai.get(key)
        if client is None:
            client = openai.AsyncOpenAI(
                base_url=with_v1(base_url),
                # Local servers need no key, but the SDK insists on one.
                api_key=api_key or "no-key",
                max_retries=retries,
                timeout=self._openai_timeout(),
                http_client=self._shared_openai_http(),
            )
            self._openai[key] = client
        return client

    def anthropic_client(
        self, base_url: str, api_key: str, retries: int
    ) -> anthropic.AsyncAnthropic:
        key = (base_url, api_key, retries)
        client = self._anthropic.get(key)
        if client is None:
            client = anthropic.AsyncAnthropic(
                base_url=base_url.removesuffix("/v1"),  # the SDK adds /v1 itself
                api_key=api_key,
                max_retries=retries,
                timeout=anthropic.Timeout(self.read_s, connect=self.connect_s),
            )
            self._anthropic[key] = client
        return client

    def ollama_client(self, base_url: str) -> ollama.AsyncClient:
        client = self._ollama.get(base_url)
        if client is None:
            timeout = httpx.Timeout(self.read_s, connect=self.connect_s)
            client = ollama.AsyncClient(host=base_url, timeout=timeout)
            self._ollama[base_url] = client
        return client

    @property
    def http(self) -> httpx.AsyncClient:
        """Plain HTTP with the answering timeouts (a long read: tokens may be slow)."""
        if self._http is None:
            timeout = httpx.Timeout(self.read_s, connect=self.connect_s)
            self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        return self._http

    def _openai_timeout(self) -> openai.Timeout:
        return openai.Timeout(self.read_s, connect=self.connect_s)

    def _shared_openai_http(self) -> openai.DefaultAsyncHttpxClient:
        with self._openai_http_lock:  # ``warm`` may be building it in a thread
            if self._openai_http is None:
                self._openai_http = openai.DefaultAsyncHttpxClient(timeout=self._openai_timeout())
            return self._openai_http

    def warm(self) -> None:
        """Build the shared HTTP client (its TLS context: ~0.18 s) and load the SDK's chat
        modules (~0.03 s) ahead of the first answer; run in a thread."""
        client = openai.AsyncOpenAI(api_key="warm-up", http_client=self._shared_openai_http())
        _ = client.chat.completions.with_streaming_response  # imports them, once per process

    async def aclose(self) -> None:
        """Close every client (at shutdown)."""
        if self._openai_http is not None:
            await self._openai_http.aclose()  # the openai clients' shared HTTP client
            self._openai_http = None
        for an in self._anthropic.values():
            await an.close()
        for ol in self._ollama.values():
            await ol.close()  # type: ignore[no-untyped-call]
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._openai.clear()
        self._anthropic.clear()
        self._ollama.clear()
