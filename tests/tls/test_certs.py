"""``modelyard certs create``: a kept local CA, ECDSA P-256 server certificates for the names
given, private keys, and clean refusals that leave nothing half-written."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from modelyard.cli import app

runner = CliRunner()


def create(directory: Path, *names: str) -> tuple[int, str]:
    args = ["certs", "create", "--dir", str(directory)]
    for name in names:
        args += ["--name", name]
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def test_a_certificate_for_dns_names_and_addresses_signed_by_a_kept_ca(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    code, out = create(certs, "example.lan", "127.0.0.1", "::1", "LocalHost")
    assert code == 0, out
    ca_pem = (certs / "ca.pem").read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    chain = x509.load_pem_x509_certificates((certs / "example.lan.pem").read_bytes())
    server = chain[0]
    assert chain[1] == ca  # the chain carries the CA, as nginx and uvicorn serve it
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["example.lan", "localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    key = server.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for private in (certs / "ca.key", certs / "example.lan.key"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    # What to set and how to trust the CA, said on the way out.
    assert str(certs / "example.lan.pem") in out and "update-ca-certificates" in out
    assert "SSL_CERT_FILE" in out and "--cacert" in out

    # A later certificate reuses the CA, so a machine that trusts it once trusts this too.
    code, out = create(certs, "other.lan")
    assert code == 0, out
    assert (certs / "ca.pem").read_bytes() == ca_pem
    other = x509.load_pem_x509_certificates((certs / "other.lan.pem").read_bytes())[0]
    other.verify_directly_issued_by(ca)


def test_a_name_that_is_neither_dns_nor_ip_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    certs = tmp_path / "certs"
    for hostile in ("https://example.lan", "exa mple.lan", "-bad.lan", "a" * 64 + ".lan", "x:1"):
        code, out = create(certs, "ok.lan", hostile)
        assert code == 2, out
        assert "error:" in out and "Traceback" not in out
    assert not certs.exists()


def test_a_failed_write_leaves_the_existing_pair_whole(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert create(certs, "example.lan")[0] == 0
    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    # The certificate's temporary name is taken (by a directory): its write fails after the
    # key's temporary file was written.
    (certs / f".example.lan.pem.{os.getpid()}").mkdir()
    code, out = create(certs, "example.lan")
    assert code == 2 and "error:" in out and "Traceback" not in out, out
    (certs / f".example.lan.pem.{os.getpid()}").rmdir()
    assert {p.name: p.read_bytes() for p in certs.iterdir()} == before
