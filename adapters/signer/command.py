"""``vgw signer serve``: run the local signing agent (adapters/signer/agent.py) until stopped."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

from adapters.command_line import CliError
from adapters.tokens.pins import PIN_ENV

LOOPBACK = ("127.0.0.1",)


def _listen(text: str) -> int:
    host, _, port = text.rpartition(":")
    if host not in LOOPBACK:
        raise CliError(f"the agent listens on 127.0.0.1 only (the person's own PC), not {host or text!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CliError(f"--listen 127.0.0.1:PORT, not {text!r}")
    return int(port)


def _origin(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname or parts.path or parts.query or parts.fragment \
            or parts.username or parts.password:
        raise CliError(f"--allow-origin takes a gateway's origin, https://HOST[:PORT] exactly, not {text!r}")
    return f"https://{parts.netloc.lower()}"


def _serve(args: argparse.Namespace) -> int:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web import server

    from adapters.signer.agent import AgentSettings, SigningAgent
    from adapters.tokens.keys import find_token
    from adapters.tokens.pins import read_pin
    from adapters.tokens.uri import named_token

    port = _listen(args.listen)
    origins = frozenset(_origin(o) for o in args.allow_origin)
    ref = named_token(key=args.key, module=args.pkcs11_module, token_label=args.token_label, key_label=args.key_label)
    if ref is None:
        raise CliError("name the card: --pkcs11-module LIB --token-label L, or --key pkcs11:…")
    find_token(ref)  # the module loads and the card is there, or the agent does not start (with the code)
    settings = AgentSettings(token=ref, origins=origins, port=port,
                             read_pin=lambda: read_pin(ref, pin_file=args.pin_file))
    agent = SigningAgent(settings)
    listening = reactor.listenTCP(port, server.Site(agent.resource()), interface="127.0.0.1")
    actual = listening.getHost().port
    agent.hosts = frozenset({f"127.0.0.1:{actual}", f"localhost:{actual}"})
    # what the agent signs, for whom, and every refusal: on its terminal (stderr), where the person sees it
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    print(f"vgw signer: ready on http://127.0.0.1:{actual} token={ref.token_label or ref.token_serial} "
          f"origins={','.join(sorted(origins))}", flush=True)
    reactor.run()
    print(f"vgw signer: stopped after {agent.signed} signatures", file=sys.stderr)
    return 0


def register(registry) -> None:
    p = registry.command("signer", "serve", help="the local signing agent: lets the gateway's pages have the "
                         "person's card sign (listens on 127.0.0.1)", handler=_serve,
                         group_help="the local signing agent on a signer's PC")
    p.add_argument("--listen", default="127.0.0.1:61162", metavar="127.0.0.1:PORT",
                   help="loopback address and port (default 127.0.0.1:61162; 0 picks a free port)")
    p.add_argument("--allow-origin", action="append", required=True, metavar="ORIGIN",
                   help="a gateway origin whose pages may ask for signatures, https://HOST[:PORT] (repeatable)")
    p.add_argument("--key", metavar="PKCS11-URI", help="the card (and key) as an RFC 7512 URI")
    p.add_argument("--pkcs11-module", metavar="LIB", help="the card's PKCS#11 library (HiCOS for MOICA cards)")
    p.add_argument("--token-label", metavar="L", help="the card's token label")
    p.add_argument("--key-label", metavar="K", help="the signing key's label (default: the card's signing key)")
    p.add_argument("--pin-file", metavar="F", help=f"a file holding the PIN (else {PIN_ENV}, or a prompt on the "
                   "agent's terminal); the page never passes a PIN")
