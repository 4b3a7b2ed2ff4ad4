"""Real fetchers for the revocation ports in :mod:`gateway.ports`: OCSP over HTTP, CRLs from files or HTTP.

They only move bytes; whether the bytes are believed is decided by :mod:`gateway.trust.revocation`. Every way
of failing (refused, timed out, HTTP error, too large, no such file) becomes
:class:`~gateway.ports.RevocationFetchError`, so the core can fall back to the next source or refuse.
HTTP goes through ``urllib.request`` from the standard library, with only http/https allowed, a deadline,
and a size cap, because these URLs come from certificates, i.e. from outside. Proxies are taken from the
environment (``http_proxy``, ``no_proxy``) as urllib does.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from gateway.ports import RevocationFetchError

OCSP_MAX_BYTES = 64 * 1024  # a single-certificate response with its responder certificate is ~2 KiB
CRL_MAX_BYTES = 64 * 1024 * 1024  # MOICA's full CRL runs to megabytes; this only stops a runaway download
_ALLOWED_SCHEMES = ("http", "https")
_CHUNK = 64 * 1024


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in _ALLOWED_SCHEMES or not parts.hostname:
        raise RevocationFetchError(f"refusing to fetch {url!r}: only http and https URLs are allowed")


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http/https (urllib alone would also follow one to ftp:) and only when asked."""

    def __init__(self, follow: bool) -> None:
        self._follow = follow

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not self._follow:
            raise RevocationFetchError(f"{req.full_url} answered HTTP {code} redirect to {newurl}; not followed")
        _check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(request: urllib.request.Request, *, timeout: float, max_bytes: int, follow_redirects: bool) -> bytes:
    """The body of a 200 answer to ``request``, read within ``timeout`` seconds overall and ``max_bytes``."""
    url = request.full_url
    _check_url(url)
    opener = urllib.request.build_opener(_RedirectHandler(follow_redirects))
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            if response.status != 200:
                raise RevocationFetchError(f"{url} answered HTTP {response.status}, not 200")
            body = bytearray()
            while chunk := response.read(min(_CHUNK, max_bytes + 1 - len(body))):
                body += chunk
                if len(body) > max_bytes:
                    raise RevocationFetchError(f"{url} answered more than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise RevocationFetchError(f"{url} did not finish answering within {timeout} s")
            return bytes(body)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise RevocationFetchError(f"{url} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise RevocationFetchError(f"cannot reach {url}: {exc.reason}") from None
    except TimeoutError:
        raise RevocationFetchError(f"{url} did not answer within {timeout} s") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise RevocationFetchError(f"fetching {url} failed: {exc.__class__.__name__}: {exc}") from None


class HttpOcspFetcher:
    """POSTs a DER OCSP request to the responder URL named in the certificate (an :class:`OcspFetcher`).

    Redirects are not followed: urllib would turn the POST into a GET without the request body.
    """

    def __init__(self, timeout: float = 5.0, max_bytes: int = OCSP_MAX_BYTES) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes

    def __call__(self, url: str, request_der: bytes) -> bytes:
        request = urllib.request.Request(url, data=request_der, method="POST", headers={
            "Content-Type": "application/ocsp-request", "Accept": "application/ocsp-response"})
        return _fetch(request, timeout=self.timeout, max_bytes=self.max_bytes, follow_redirects=False)


def crl_urls(cert: x509.Certificate) -> list[str]:
    """The http/https URLs in the certificate's CRL Distribution Points, in the order listed."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [name.value for point in points for name in (point.full_name or [])
            if isinstance(name, x509.UniformResourceIdentifier)
            and urllib.parse.urlsplit(name.value).scheme.lower() in _ALLOWED_SCHEMES]


class HttpCrlFetcher:
    """GETs the CRL from the certificate's CRL Distribution Points (a :class:`CrlFetcher`).

    URLs are tried in the order the certificate lists them; the first 200 answer wins.
    """

    def __init__(self, timeout: float = 5.0, max_bytes: int = CRL_MAX_BYTES) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes

    def __call__(self, issuer: x509.Certificate, cert: x509.Certificate) -> bytes:
        urls = crl_urls(cert)
        if not urls:
            raise RevocationFetchError("the certificate names no http(s) CRL distribution point")
        failures = []
        for url in urls:
            request = urllib.request.Request(url, method="GET", headers={"Accept": "application/pkix-crl"})
            try:
                return _fetch(request, timeout=self.timeout, max_bytes=self.max_bytes, follow_redirects=True)
            except RevocationFetchError as exc:
                failures.append(str(exc))
        raise RevocationFetchError("; ".join(failures))


class FileCrlFetcher:
    """Reads CRLs from local files (a :class:`CrlFetcher`), e.g. mirrored by cron or laid out by ``vgw pki init``.

    ``source`` is either

    * a mapping from the issuing CA's subject (:class:`x509.Name`) to its CRL file, for any set of CAs; or
    * a directory as ``vgw pki init`` lays it out: ``root.crl`` for a self-signed issuer (the root) and
      ``intermediate.crl`` for any other. Given the PKI folder itself, its ``crl/`` subfolder is used.

    Files are read on every call, so a reissued CRL is picked up; the core caches until nextUpdate.
    """

    def __init__(self, source: Path | str | Mapping[x509.Name, Path | str]) -> None:
        if isinstance(source, Mapping):
            self._by_issuer = {subject: Path(path) for subject, path in source.items()}
            self._dir = None
        else:
            directory = Path(source)
            self._dir = directory / "crl" if (directory / "crl").is_dir() else directory
            self._by_issuer = None

    def path_for(self, issuer: x509.Certificate) -> Path:
        if self._by_issuer is not None:
            try:
                return self._by_issuer[issuer.subject]
            except KeyError:
                raise RevocationFetchError(
                    f"no CRL file is configured for {issuer.subject.rfc4514_string()}") from None
        return self._dir / ("root.crl" if issuer.subject == issuer.issuer else "intermediate.crl")

    def __call__(self, issuer: x509.Certificate, cert: x509.Certificate) -> bytes:
        path = self.path_for(issuer)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise RevocationFetchError(f"cannot read CRL file {path}: {exc.strerror or exc}") from None
