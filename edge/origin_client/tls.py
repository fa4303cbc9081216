"""TLS to an https origin (or an https S3 endpoint): always verified, and said plainly when not.

The edge is a shared cache: an unverified origin connection would let one on-path attacker
poison what every client is served, so verification has no off switch. An origin with a
private CA, or a self-signed certificate, is trusted by naming that PEM in ``origin.ca_file``
(which then replaces the system store, like curl's --cacert or nginx's
proxy_ssl_trusted_certificate). Hostname checking stays on; SNI carries the URL's host, or
``origin.tls_server_name`` when the origin is reached by an address (or a name) its certificate
does not list (nginx's proxy_ssl_name): that name is then both sent as SNI and verified.
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


def check_server_name(value: object) -> str:
    """origin.tls_server_name as given, or ConfigError saying why it cannot be a TLS name.

    Only a bare host name: the port and scheme come from origin.url, and a value that is not a
    name would fail every handshake instead of stopping start-up.
    """
    key = "origin.tls_server_name"
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a host name string, got {value!r}")
    if not value:
        raise ConfigError(f"{key}: empty (leave it out to use the host of origin.url)")
    if any(c.isspace() for c in value):
        raise ConfigError(f"{key}: contains whitespace: {value!r}")
    if "/" in value:
        raise ConfigError(f"{key}: a host name, not a URL or path: {value!r}")
    if ":" in value:
        raise ConfigError(f"{key}: a host name without a port (the port comes from "
                          f"origin.url): {value!r}")
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if (not value.isascii() or len(name) > 253
            or not all(0 < len(lb) <= 63 and _LABEL_CHARS.issuperset(lb) for lb in labels)):
        raise ConfigError(f"{key}: not a valid host name (letters, digits, '-', '.'; "
                          f"an IDN in its xn-- form): {value!r}")
    return value


_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


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
