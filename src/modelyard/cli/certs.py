"""``modelyard certs create``: a local CA (kept and reused) and a server certificate signed by
it, for HTTPS on modelyard's own port (docs/PROXY.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from modelyard.cli.app import app, console, fail
from modelyard.errors import ModelyardError

certs_app = typer.Typer(help="Certificates for HTTPS.", no_args_is_help=True)
app.add_typer(certs_app, name="certs")


@certs_app.command("create")
def create(
    name: list[str] = typer.Option(
        ..., "--name", help="A DNS name or IP address the certificate is for (repeat)."
    ),
    directory: Path = typer.Option(
        None, "--dir", help="Where to keep the CA and certificates (default: the config dir)."
    ),
) -> None:
    """Make a server certificate for the names, signed by modelyard's local CA."""
    from modelyard.tls import certs_dir, create_certificate, parse_name

    try:
        names = [parse_name(n) for n in name]
        issued = create_certificate(directory or certs_dir(), names)
    except ModelyardError as exc:
        fail(exc.detail, exc.hint, code=2)
    except OSError as exc:
        fail(
            f"cannot write the certificate: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else ""),
            "Give a directory you can write with --dir.",
            code=2,
        )
    ca = issued.ca_cert
    made = "made a new local CA" if issued.ca_created else "signed with the existing local CA"
    console.print(f"Certificate {issued.certfile} ({made}: {ca})", highlight=False)
    console.print(
        "\nSettings (config file, or MODELYARD_TLS_CERTFILE / MODELYARD_TLS_KEYFILE):\n"
        f'  tls_certfile = "{issued.certfile}"\n'
        f'  tls_keyfile = "{issued.keyfile}"\n'
        '  public_url = "https://NAME:PORT"   # the name people use, if not this machine\'s\n'
        "\nTrust the CA on each machine that connects (once; later certificates reuse it):\n"
        f"  Debian/Ubuntu: sudo cp {ca} /usr/local/share/ca-certificates/modelyard-ca.crt"
        " && sudo update-ca-certificates\n"
        "  macOS: sudo security add-trusted-cert -d -r trustRoot"
        f" -k /Library/Keychains/System.keychain {ca}\n"
        f'  Windows: certutil -addstore -f Root "{ca}"\n'
        f"  Python (openai, anthropic, ollama, httpx, requests): export SSL_CERT_FILE={ca}"
        f" REQUESTS_CA_BUNDLE={ca}\n"
        f"  curl: curl --cacert {ca} https://…\n"
        f"Its key {ca.with_name('ca.key')} stays private (0600): whoever has it can "
        "impersonate any site to machines that trust the CA.",
        highlight=False,
        soft_wrap=True,
    )
