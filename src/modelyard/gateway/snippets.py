"""Where the gateway is reached and how: its endpoint URLs and copy-paste snippets for the
clients people point at it (the Gateway page and ``GET /api/gateway/info`` show them).

A key is never written out: snippets read it from ``MODELYARD_API_KEY``."""

from __future__ import annotations

from dataclasses import dataclass

KEY_VARIABLE = "MODELYARD_API_KEY"
PLACEHOLDER_MODEL = "MODEL"  # when no model is usable yet


@dataclass(frozen=True)
class GatewayUrls:
    """The gateway's endpoints under one base URL (``https://models.example.lan``)."""

    base: str

    @property
    def openai(self) -> str:
        return f"{self.base}/v1"

    @property
    def anthropic(self) -> str:
        return self.base  # the Anthropic SDK appends /v1/messages itself

    @property
    def ollama(self) -> str:
        return f"{self.base}/ollama"


def snippets(urls: GatewayUrls, model: str | None, ca_file: str | None) -> dict[str, str]:
    """Snippets by client: ``openai``, ``anthropic``, ``ollama`` (Python SDKs), ``curl`` and
    ``open_webui`` (its connection settings). ``ca_file``: the CA a client must trust, for a
    certificate made by ``modelyard certs``."""
    name = model or PLACEHOLDER_MODEL
    trust = f"# Trust modelyard's CA first: export SSL_CERT_FILE={ca_file}\n" if ca_file else ""
    # The OpenAI and Anthropic SDKs insist on a key: a real one from the variable (needed
    # from another machine), else a placeholder, which leaves the decision to local trust.
    key = f'os.environ.get("{KEY_VARIABLE}", "local")'
    message = '[{"role": "user", "content": "Hello"}]'
    openai = (
        f"{trust}import os\nfrom openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{urls.openai}", api_key={key})\n'
        f'reply = client.chat.completions.create(model="{name}", messages={message})\n'
        "print(reply.choices[0].message.content)"
    )
    anthropic = (
        f"{trust}import os\nfrom anthropic import Anthropic\n\n"
        f'client = Anthropic(base_url="{urls.anthropic}", api_key={key})\n'
        "reply = client.messages.create(\n"
        f'    model="{name}", max_tokens=256, messages={message}\n)\n'
        "print(reply.content[0].text)"
    )
    ollama = (
        f"{trust}import os\nfrom ollama import Client\n\n"
        "key = os.environ.get(" + f'"{KEY_VARIABLE}"' + ")\n"
        f'client = Client(host="{urls.ollama}", '
        'headers={"Authorization": f"Bearer {key}"} if key else None)\n'
        f'reply = client.chat(model="{name}", messages={message})\n'
        'print(reply["message"]["content"])'
    )
    cacert = f" --cacert {ca_file}" if ca_file else ""
    curl = (
        f"curl{cacert} {urls.openai}/chat/completions \\\n"
        f'  -H "Authorization: Bearer ${KEY_VARIABLE}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f'  -d \'{{"model": "{name}", "messages": {message}}}\''
    )
    open_webui = (
        "Admin Settings → Connections:\n"
        f"  OpenAI API: {urls.openai}   key: your modelyard key\n"
        f"  Ollama API: {urls.ollama}"
    )
    return {
        "openai": openai,
        "anthropic": anthropic,
        "ollama": ollama,
        "curl": curl,
        "open_webui": open_webui,
    }
