"""The signer's key for ``vgw voucher sign`` and ``vgw action sign``: a PEM file, or a key on a PKCS#11 token
(a citizen-certificate card, SoftHSM2 in tests), named by an RFC 7512 URI in ``--key`` or by
``--pkcs11-module`` + ``--token-label`` [+ ``--key-label``]. On a token the certificate may come from the
token itself; the PIN from ``--pin-file``, the URI's pin-source, ``VGW_PKCS11_PIN`` or a prompt."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from adapters.command_line import CliError
from adapters.tokens.pins import PIN_ENV


def add_signing_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", metavar="KEY", help="signer's private key: a PEM file, or a PKCS#11 URI (RFC 7512, "
                   "pkcs11:token=…;object=…?module-path=…&pin-source=file:…) of a key on a token")
    p.add_argument("--cert", help="signer's certificate (PEM); may be left out when the token holds it beside the key")
    token = p.add_argument_group("a key on a PKCS#11 token (instead of --key)")
    token.add_argument("--pkcs11-module", metavar="LIB", help="the token's PKCS#11 library (HiCOS for MOICA cards; "
                       "/usr/lib/softhsm/libsofthsm2.so for SoftHSM2)")
    token.add_argument("--token-label", metavar="L", help="the token's label")
    token.add_argument("--key-label", metavar="K", help="the key's label (default: the token's only signing key)")
    token.add_argument("--pin-file", metavar="F", help=f"a file holding the PIN (else the URI's pin-source, {PIN_ENV}, "
                       "or a prompt on a terminal)")


def load_signing_material(key_path: str, cert_path: str):
    """A PEM private key and certificate."""
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise CliError(f"cannot load the key or certificate: {exc}") from None
    return key, cert


def _load_cert(path: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"cannot load the certificate: {exc}") from None


@contextlib.contextmanager
def signing_material(args: argparse.Namespace) -> Iterator[tuple[object, x509.Certificate]]:
    """(key, certificate) from the arguments, for the duration of the block (a token is logged out after)."""
    on_token = args.pkcs11_module or args.token_label or args.key_label
    uri = args.key if args.key and args.key.startswith("pkcs11:") else None
    if args.key and not uri:
        if on_token:
            raise CliError("give --key KEY.pem or a token (a pkcs11: URI or --pkcs11-module/--token-label), not both")
        if not args.cert:
            raise CliError("a PEM key needs its certificate: --cert CERT.pem")
        yield load_signing_material(args.key, args.cert)
        return
    if not uri and not (args.pkcs11_module and args.token_label):
        raise CliError("give the signer's key: --key KEY.pem --cert CERT.pem, --key pkcs11:…, or "
                       "--pkcs11-module LIB --token-label L")
    from adapters.tokens.keys import open_signer
    from adapters.tokens.pins import read_pin
    from adapters.tokens.uri import named_token

    ref = named_token(key=uri, module=args.pkcs11_module, token_label=args.token_label, key_label=args.key_label)
    given = _load_cert(args.cert) if args.cert else None
    with open_signer(ref, read_pin(ref, pin_file=args.pin_file), cert=given) as signer:
        yield signer.key, signer.cert
