"""Naming a key on a token: an RFC 7512 ``pkcs11:`` URI, or the command line's module, token and key labels.

RFC 7512 (https://www.rfc-editor.org/rfc/rfc7512): ``pkcs11:token=card-1;object=signature?module-path=/usr/
lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin`` — path attributes separated by ``;``, query attributes
by ``&``, values percent-encoded. Only what names one key and how to reach it is read (``token``, ``serial``,
``object``, ``id``, ``type``; ``module-path``, ``pin-source``, ``pin-value``); an attribute the RFC does not
define, a second value for one, or a ``type`` other than ``private`` is refused, so a typo does not quietly
select another key.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from gateway.errors import Refusal

PATH_ATTRIBUTES = frozenset({"token", "manufacturer", "serial", "model", "library-manufacturer",
                             "library-description", "library-version", "object", "type", "id", "slot-description",
                             "slot-manufacturer", "slot-id"})
QUERY_ATTRIBUTES = frozenset({"pin-source", "pin-value", "module-name", "module-path"})
URI_CODE = "token-uri-invalid"


@dataclass(frozen=True)
class TokenRef:
    """One key on one token, and how to reach it."""

    module: str
    """The PKCS#11 library: the card vendor's (HiCOS for MOICA cards) or SoftHSM2's."""
    token_label: str | None = None
    token_serial: str | None = None
    key_label: str | None = None
    key_id: bytes | None = None
    pin_source: str | None = None
    """Where the PIN is: ``file:PATH`` or a bare path (RFC 7512 pin-source)."""
    pin_value: str | None = None
    """The PIN itself, when the URI carries it (RFC 7512 allows it; a file or a prompt is safer)."""

    def __post_init__(self) -> None:
        if not self.module:
            raise Refusal(URI_CODE, "no PKCS#11 module named: give module-path in the URI or --pkcs11-module")
        if self.token_label is None and self.token_serial is None:
            raise Refusal(URI_CODE, "no token named: give token= (its label) or serial= in the URI, or --token-label")

    @property
    def token_name(self) -> str:
        """For messages: which token, by label or serial."""
        return f"token {self.token_label or f'serial {self.token_serial}'!r}"

    def describe(self) -> str:
        """For messages: the token and key, never the PIN."""
        key = self.key_label or (self.key_id.hex() if self.key_id else "its signing key")
        return f"{self.token_name}, {key}"


def parse_pkcs11_uri(text: str, *, module: str | None = None) -> TokenRef:
    """The key ``text`` names (Refusal ``token-uri-invalid`` otherwise); ``module`` when the URI has no
    module-path."""
    if not text.startswith("pkcs11:"):
        raise Refusal(URI_CODE, "a PKCS#11 URI begins with pkcs11:")
    body = text[len("pkcs11:"):]
    path, _, query = body.partition("?")
    values: dict[str, bytes] = {}
    for part, separator, known in ((path, ";", PATH_ATTRIBUTES), (query, "&", QUERY_ATTRIBUTES)):
        for item in filter(None, part.split(separator)):
            name, equals, raw = item.partition("=")
            if not equals:
                raise Refusal(URI_CODE, f"{name!r} has no value")
            if name not in known:
                raise Refusal(URI_CODE, f"{name!r} is not a PKCS#11 URI attribute here (RFC 7512)")
            if name in values:
                raise Refusal(URI_CODE, f"{name!r} is given twice")
            values[name] = unquote_to_bytes(raw)

    def text_of(name: str) -> str | None:
        raw = values.get(name)
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(URI_CODE, f"{name!r} is not UTF-8 text") from None

    if text_of("type") not in (None, "private"):
        raise Refusal(URI_CODE, "only a private key signs: type=private or no type")
    return TokenRef(module=text_of("module-path") or module or "", token_label=text_of("token"),
                    token_serial=text_of("serial"), key_label=text_of("object"), key_id=values.get("id"),
                    pin_source=text_of("pin-source"), pin_value=text_of("pin-value"))


def named_token(*, key: str | None, module: str | None, token_label: str | None,
                key_label: str | None = None) -> TokenRef | None:
    """The token a command's options name: ``key`` as an RFC 7512 URI (``module`` where it names none), else
    ``module`` + ``token_label`` [+ ``key_label``]; None when they name no token (the caller says what to give)."""
    if key:
        return parse_pkcs11_uri(key, module=module)
    if module and token_label:
        return TokenRef(module=module, token_label=token_label, key_label=key_label)
    return None
