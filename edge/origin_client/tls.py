"""TLS to an https origin (or an https S3 endpoint): always verified, and said plainly when not.

The edge is a shared cache: an unverified origin connection would let one on-path attacker
poison what every client is served, so verification has no off switch. An origin with a
private CA, or a self-signed certificate, is trusted by naming that PEM in ``origin.ca_file``
(which then replaces the system store, like curl's --cacert or nginx's
proxy_ssl_trusted_certificate). Hostname checking stays on; SNI carries the URL's host.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from contracts.config import ConfigError

# OpenSSL X509_V_ERR_* codes -> the short reason a client sees in the 502 body.
_VERIFY_REASONS: dict[int, str] = {
    9: "origin TLS certificate not yet valid",
    10: "origin TLS certificate expired",
    18: "origin TLS certificate not trusted (self-signed)",
    19: "origin TLS certificate not trusted (self-signed CA)",
    20: "origin TLS certificate not trusted",
    21: "origin TLS certificate not trusted",
    23: "origin TLS certificate revoked",
    62: "origin TLS certificate is for another hostname",
    64: "origin TLS certificate is for another IP address",
}


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context: the system store, or exactly the certificates in ca_file.

    Raises ConfigError naming ``origin.ca_file`` when the file is missing, unreadable or holds
    no certificate, so a bad setting stops start-up instead of failing every fetch later.
    """
    if ca_file is None:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        # with cafile given, the system store is not loaded: exactly this bundle is trusted
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except ssl.SSLError as e:
        raise ConfigError(f"origin.ca_file: no PEM certificate in {ca_file} ({e.reason})") from e
    except OSError as e:
        raise ConfigError(f"origin.ca_file: cannot read {ca_file}: {e.strerror or e}") from e
    if ctx.cert_store_stats().get("x509", 0) == 0:
        raise ConfigError(f"origin.ca_file: no certificate in {ca_file}")
    return ctx


def check_ca_file(value: str) -> str:
    """The ca_file setting as an absolute path (workers re-read it), checked to load."""
    if not value:
        raise ConfigError("origin.ca_file: empty path")
    path = str(Path(value).expanduser().absolute())
    client_context(path)
    return path


def failure_reason(err: BaseException) -> str:
    """The client-facing reason for a TLS failure talking to the origin."""
    cert_err = getattr(err, "certificate_error", None)  # aiohttp ClientConnectorCertificateError
    if not isinstance(cert_err, ssl.SSLCertVerificationError):
        cert_err = err if isinstance(err, ssl.SSLCertVerificationError) else None
    if cert_err is not None:
        known = _VERIFY_REASONS.get(cert_err.verify_code)
        if known:
            return known
        return f"origin TLS certificate rejected: {cert_err.verify_message}"
    return "origin TLS handshake failed"
