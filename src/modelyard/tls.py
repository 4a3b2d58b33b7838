"""HTTPS: a local certificate authority and the server certificates it signs
(``modelyard certs create``), and the check ``modelyard serve`` makes of the configured pair.

The CA is made once and kept (``ca.pem``, and ``ca.key`` private to its owner), so that a
machine that trusts it once trusts every later certificate. Keys are ECDSA P-256. Files are
written beside themselves under a temporary name and renamed into place, so an existing file
is replaced whole or not at all.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelyard.config import CA_CERT_NAME
from modelyard.errors import ConfigError, InvalidInput

CA_KEY_NAME = "ca.key"
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity Apple's clients accept for a server certificate
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")

Name = ipaddress.IPv4Address | ipaddress.IPv6Address | str


@dataclass(frozen=True)
class IssuedCertificate:
    ca_cert: Path
    certfile: Path
    keyfile: Path
    ca_created: bool  # False: the existing CA signed it


def certs_dir(env: dict[str, str] | None = None) -> Path:
    """Where certificates are kept: ``certs/`` beside the config file named by
    ``MODELYARD_CONFIG``, else in the user's config directory."""
    environ = os.environ if env is None else env
    config = environ.get("MODELYARD_CONFIG", "")
    base = Path(config).parent if config else Path(platformdirs.user_config_dir("modelyard"))
    return base / "certs"


def parse_name(value: str) -> Name:
    """An IP address, or a DNS name (lower-cased); anything else is refused."""
    text = value.strip()
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    name = text.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(
            f"{value!r} is neither a DNS name nor an IP address",
            code="invalid_certificate_name",
            hint="Give names like example.lan, localhost or 192.168.1.20 (letters, digits, "
            "hyphens and dots; no scheme, port or path).",
        )
    return name


def create_certificate(directory: Path, names: list[Name]) -> IssuedCertificate:
    """A server certificate for ``names`` (the first is its file name), signed by the CA in
    ``directory`` — made first if there is none."""
    if not names:
        raise InvalidInput("a certificate needs at least one name", code="invalid_certificate_name")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key, ca_cert, created = _certificate_authority(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName(n) if isinstance(n, str) else x509.IPAddress(n) for n in names
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(names[0]))]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    stem = str(names[0]).replace(":", "_")
    certfile, keyfile = directory / f"{stem}.pem", directory / f"{stem}.key"
    _write_pair(certfile, _cert_pem(cert) + _cert_pem(ca_cert), keyfile, _key_pem(key))
    return IssuedCertificate(directory / CA_CERT_NAME, certfile, keyfile, created)


def check_pair(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """The server context for the configured pair; ``ConfigError`` when a file cannot be
    read or the key is not the certificate's."""
    for path in (certfile, keyfile):
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read {path}: {exc.strerror or exc}",
                hint="Check tls_certfile and tls_keyfile: the files must exist and be "
                "readable by modelyard's user ('modelyard certs create' makes a pair).",
            ) from exc
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{certfile} and {keyfile} are not a certificate and its key ({exc.reason})",
            hint="tls_certfile must be a PEM certificate and tls_keyfile its unencrypted PEM "
            "private key, made together.",
        ) from exc
    return context


def _certificate_authority(
    directory: Path,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, bool]:
    """The kept CA, or a new one (written before any certificate it signs)."""
    cert_path, key_path = directory / CA_CERT_NAME, directory / CA_KEY_NAME
    if cert_path.exists() or key_path.exists():
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"the certificate authority in {directory} cannot be used: {exc}",
                hint=f"Restore {CA_CERT_NAME} and {CA_KEY_NAME}, or move the directory away "
                "to make a new CA (machines that trust the old one must then trust the new).",
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{key_path} is not an ECDSA key")
        return key, cert, False
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelyard"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"modelyard local CA ({os.uname().nodename})"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(cert_path, _cert_pem(cert), key_path, _key_pem(key))
    return key, cert, True


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_pair(certfile: Path, cert: bytes, keyfile: Path, key: bytes) -> None:
    """Both files complete under temporary names first, then renamed into place: a failure
    leaves the old pair (or nothing), never a half-written file."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, data, mode in ((keyfile, key, 0o600), (certfile, cert, 0o644)):
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                mode,
            )
            written.append((temporary, path))
            try:
                os.fchmod(fd, mode)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, path in written:
        os.replace(temporary, path)
