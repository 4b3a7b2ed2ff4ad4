"""``python -m adapters.http.health_check``: the container's health check of a running ``vgw serve``.

The gateway's ``/readyz`` (the store answers, the AMQP intake is connected) is served only over HTTPS with a
client certificate, like every route on the agencies' listener. So the check either presents a certificate
the gateway trusts (``--cert/--key``, e.g. an agency's TLS pair in a test deployment) and asks ``/readyz``,
or — with no certificate at hand, as in the image's default HEALTHCHECK — asks the plain-HTTP metrics
listener (``metrics.listen``, kept inside the container), which proves the process and its reactor answer.

Standard library only and a few milliseconds of work, so a check every 30 s costs the container nothing.
Exit 0 when the answer is 200, else 1 with one line saying why (Docker keeps it in ``docker inspect``).
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request


def check(url: str, *, ca: str | None = None, cert: str | None = None, key: str | None = None,
          timeout: float = 4.0) -> str | None:
    """None when ``url`` answers 200; otherwise why not."""
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:
            if answer.status != 200:
                return f"{url}: HTTP {answer.status}"
            answer.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (OSError, ssl.SSLError) as exc:
        return f"{url}: {exc}"
    return None


def _metrics_url() -> str:
    """The plain-HTTP metrics listener of this container: VGW_METRICS_LISTEN (a wildcard host asked on
    loopback), else 127.0.0.1:9100."""
    listen = os.environ.get("VGW_METRICS_LISTEN") or "127.0.0.1:9100"
    host, _, port = listen.rpartition(":")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}.get(host, host)
    return f"http://{host}:{port}/metrics"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.http.health_check", description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", default=_metrics_url(),
                        help="what to ask (default: the metrics listener VGW_METRICS_LISTEN names, else "
                             "http://127.0.0.1:9100/metrics)")
    parser.add_argument("--ca", help="CA certificates (PEM) the gateway's certificate chains to")
    parser.add_argument("--cert", help="a client certificate (PEM) the gateway trusts, for https:// URLs")
    parser.add_argument("--key", help="its private key (PEM)")
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args(argv)
    problem = check(args.url, ca=args.ca, cert=args.cert, key=args.key, timeout=args.timeout)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
