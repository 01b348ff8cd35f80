"""meshctl's local CA and the short-lived leaf certificates it issues to the sidecars that serve HTTPS.

Files live under $MESHCTL_HOME (default: ~/.local/share/meshctl). Private keys are written 0600,
atomically (temp file + rename), under a lock so two meshctl processes never race on the CA.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import socket
import ssl
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import MeshctlError
from .home import atomic_write, meshctl_home, unwritable

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=7)
# Re-issue a leaf this long before it expires, so a running stack never serves an expired one.
LEAF_RENEW_BEFORE = dt.timedelta(days=2)


def default_sans(service: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    names = ["localhost", "127.0.0.1", "::1", service, *extra]
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class IssuedCert:
    cert_path: Path       # leaf certificate followed by the CA certificate
    key_path: Path        # the leaf's private key, 0600
    bundle_path: Path     # certificate chain and key in one file (what HAProxy's `crt` reads), 0600
    ca_path: Path
    not_after: dt.datetime
    reissued: bool


class CertificateAuthority:
    def __init__(self, home: Path | None = None):
        self.home = home or meshctl_home()
        self.dir = self.home / "ca"
        self.cert_path = self.dir / "ca.pem"
        self.key_path = self.dir / "ca-key.pem"

    # -- the CA itself ------------------------------------------------------------------------

    @property
    def bundle_path(self) -> Path:
        """This machine's trusted roots plus meshctl's CA: what app containers trust (mounted)."""
        return self.dir / "ca-bundle.pem"

    def ready(self) -> bool:
        return self.cert_path.exists() and self.key_path.exists() and self.bundle_path.exists()

    def ensure(self) -> Path:
        """Create the CA on first use (and the apps' bundle); return the path of the certificate to trust."""
        if self.ready():
            return self.cert_path
        with self._lock():
            if self.cert_path.exists() and self.key_path.exists():
                self._write_bundle()
                return self.cert_path
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshctl"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"meshctl local CA ({socket.gethostname()})"),
            ])
            now = _now()
            cert = (
                x509.CertificateBuilder()
                .subject_name(name).issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + CA_VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256())
            )
            atomic_write(self.key_path, _key_pem(key), mode=0o600)
            atomic_write(self.cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
            self._write_bundle()
        return self.cert_path

    def _write_bundle(self) -> None:
        roots = b""
        for path in system_roots():
            try:
                roots = Path(path).read_bytes()
                break
            except OSError:
                continue
        atomic_write(self.bundle_path, roots.rstrip() + b"\n" + self.cert_path.read_bytes() if roots
                     else self.cert_path.read_bytes(), mode=0o644)

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        self.ensure()
        try:
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        except (ValueError, OSError) as exc:
            raise MeshctlError(f"the CA in {self.dir} cannot be read: {exc}",
                               hint=f"remove {self.dir} to create a new CA (then trust the new ca.pem)") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):   # meshctl writes P-256 keys only
            raise MeshctlError(f"the CA key in {self.dir} is not the P-256 key meshctl writes",
                               hint=f"remove {self.dir} to create a new CA (then trust the new ca.pem)")
        return cert, key

    # -- leaf certificates --------------------------------------------------------------------

    def issue(self, directory: Path, sans: tuple[str, ...], *, common_name: str | None = None,
              unit: str | None = None) -> IssuedCert:
        """A certificate for `sans` in `directory` (a server's, and a mesh client's: a SPIFFE URI
        among the SANs is the workload's identity; `unit`, the subject's OU, its project), re-issued
        only when needed: missing, expiring within LEAF_RENEW_BEFORE, other SANs, or another CA.
        The CA's own certificate is written beside it (ca.pem: what a proxy verifies peers with)."""
        ca_cert, ca_key = self._load()
        cert_path, key_path, bundle_path = directory / "cert.pem", directory / "key.pem", directory / "bundle.pem"
        current = _read_cert(cert_path)
        if self._reissue_reason(directory, current, ca_cert, sans) is None:
            assert current is not None
            return IssuedCert(cert_path, key_path, bundle_path, self.cert_path,
                              current.not_valid_after_utc, reissued=False)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or sans[0]),
                                     *([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit)] if unit else [])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + LEAF_VALIDITY)
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in sans]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
        key_pem = _key_pem(key)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise unwritable(directory, exc) from exc
        # Key first: a reader that sees the new certificate always finds its key.
        atomic_write(key_path, key_pem, mode=0o600)
        atomic_write(bundle_path, chain + key_pem, mode=0o600)
        atomic_write(cert_path, chain, mode=0o644)
        atomic_write(directory / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return IssuedCert(cert_path, key_path, bundle_path, self.cert_path, cert.not_valid_after_utc, reissued=True)

    def reissue_reason(self, directory: Path, sans: tuple[str, ...]) -> str | None:
        """Why the certificate in `directory` must be (re)issued, or None when it is current.
        Reads files only; a CA that does not exist yet means a new certificate."""
        if not self.cert_path.exists():
            return "missing"
        try:
            ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        except (ValueError, OSError):
            return "the CA cannot be read"
        return self._reissue_reason(directory, _read_cert(directory / "cert.pem"), ca_cert, sans)

    @staticmethod
    def _reissue_reason(directory: Path, cert: x509.Certificate | None, ca_cert: x509.Certificate,
                        sans: tuple[str, ...]) -> str | None:
        if cert is None or not (directory / "key.pem").exists() or not (directory / "bundle.pem").exists():
            return "missing"
        if cert.issuer != ca_cert.subject:
            return "signed by another CA"
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, Exception):  # InvalidSignature has no common base
            return "signed by another CA"
        left = cert.not_valid_after_utc - _now()
        if left < LEAF_RENEW_BEFORE:
            return f"expires in {max(left.total_seconds(), 0) / 3600:.0f} h"
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return "it names no host"
        have = {str(n.value) for n in names}
        if have != {str(_general_name(n).value) for n in sans}:
            return "its host names changed"
        return None

    @contextmanager
    def _lock(self):
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle = open(self.dir / ".lock", "w")   # noqa: SIM115 (closed by the with below)
        except OSError as exc:
            raise unwritable(self.dir, exc) from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def system_roots() -> list[str]:
    """Where this machine keeps its trusted roots (Debian's, Fedora's, OpenSSL's default)."""
    paths = ssl.get_default_verify_paths()
    return [p for p in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                        paths.cafile, paths.openssl_cafile) if p]


def _read_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _general_name(name: str) -> x509.GeneralName:
    if name.startswith("spiffe://"):
        return x509.UniformResourceIdentifier(name)
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
