"""Signing with a key that stays on its token: a private-key object signxml can be handed.

signxml's signer calls only ``key.sign(data, padding, algorithm)`` (RSA) or ``key.sign(data,
signature_algorithm)`` (ECDSA) and reads ``key.key_size``; the core's signing profile
(gateway/xmlsec/signing.py) tells RSA from ECDSA by type. So :class:`TokenRsaKey` and :class:`TokenEcKey`
are cryptography private-key types whose ``sign`` hands the data to the token — CKM_SHA256_RSA_PKCS for the
RSA-2048 citizen cards, CKM_ECDSA over the SHA-256 digest for P-256 (the raw r‖s a token returns is
DER-encoded, as cryptography's keys return it) — and whose ``private_bytes`` and ``private_numbers`` refuse:
there is nothing to export. XAdES-BES is then built by signxml around the token's signature value, and the
signature verifies like any other.

Every failure is a :class:`~gateway.errors.Refusal` with a stable code (docs/api.md):
``token-module-missing``, ``token-not-found`` (no such token, or several), ``token-not-present`` (the reader
has no card), ``token-pin-incorrect`` (with what the token says of the tries left; never retried),
``token-pin-locked``, ``token-key-not-found``, ``token-key-ambiguous``, ``token-no-signing-key`` (no
certificate with digitalSignature or nonRepudiation beside the key), ``token-cert-mismatch``,
``token-removed`` (the card went while signing), ``token-error``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key
from pkcs11.util.rsa import encode_rsa_public_key

from adapters.tokens.uri import TokenRef
from gateway.errors import Refusal

_LIBRARIES: dict[str, pkcs11.lib] = {}
_LIBRARIES_LOCK = threading.Lock()


def library(module: str) -> pkcs11.lib:
    """The PKCS#11 library at ``module``, loaded (and C_Initialize'd) once per process: a module must not be
    initialised twice."""
    with _LIBRARIES_LOCK:
        if module not in _LIBRARIES:
            try:
                _LIBRARIES[module] = pkcs11.lib(module)
            except (RuntimeError, OSError, p11.PKCS11Error) as exc:
                raise Refusal("token-module-missing", f"cannot load the PKCS#11 module {module}: {exc}") from None
        return _LIBRARIES[module]


def find_token(ref: TokenRef) -> pkcs11.Token:
    """The one token ``ref`` names (Refusal ``token-not-found`` / ``token-not-present``)."""
    lib = library(ref.module)
    try:
        return lib.get_token(token_label=ref.token_label, token_serial=ref.token_serial)
    except p11.NoSuchToken:
        raise Refusal("token-not-found", f"no {ref.token_name} is inserted (reader empty, or "
                      "another card)") from None
    except p11.MultipleTokensReturned:
        raise Refusal("token-not-found", f"several tokens match {ref.token_name}; name it by serial")\
            from None
    except p11.TokenNotPresent:
        raise Refusal("token-not-present", "the card reader holds no card") from None


def tries_left(flags: TokenFlag) -> str:
    """What a token says of the PIN tries left (PKCS#11 gives flags, not a number)."""
    if flags & TokenFlag.USER_PIN_LOCKED:
        return "the PIN is now locked"
    if flags & TokenFlag.USER_PIN_FINAL_TRY:
        return "one try is left before the PIN locks"
    if flags & TokenFlag.USER_PIN_COUNT_LOW:
        return "an incorrect PIN was entered; few tries are left"
    return "the token does not say how many tries are left"


def open_session(ref: TokenRef, pin: str) -> pkcs11.Session:
    """A logged-in session on ``ref``'s token. A locked PIN is refused before trying; a wrong one is tried
    once and reported with the token's word on the tries left."""
    token = find_token(ref)
    if token.flags & TokenFlag.USER_PIN_LOCKED:
        raise Refusal("token-pin-locked", f"the PIN of token {token.label!r} is locked: unlock it with the card's "
                      "PUK (the issuer's tool), then sign again")
    try:
        return token.open(user_pin=pin, rw=True)
    except p11.PinIncorrect:
        raise Refusal("token-pin-incorrect", f"the PIN is not the PIN of token {token.label!r}; "
                      f"{tries_left(find_token(ref).flags)}; nothing was signed") from None
    except p11.PinLocked:
        raise Refusal("token-pin-locked", f"the PIN of token {token.label!r} is locked") from None
    except (p11.PinLenRange, p11.PinInvalid):
        raise Refusal("token-pin-incorrect", f"that is not a PIN token {token.label!r} accepts (its length or "
                      "characters); nothing was signed") from None
    except (p11.TokenNotPresent, p11.DeviceRemoved):
        raise Refusal("token-not-present", "the card was removed") from None
    except p11.PKCS11Error as exc:
        raise Refusal("token-error", f"token {token.label!r}: {type(exc).__name__}") from None


SIGNING_USAGE = "digitalSignature or nonRepudiation"


def signs(cert: x509.Certificate) -> bool:
    """Whether ``cert``'s key usage lets it sign documents (a card's signature certificate, not its
    encryption one). No key usage extension: not a card's; refused too."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return usage.digital_signature or usage.content_commitment


def token_certificates(session: pkcs11.Session) -> list[tuple[bytes | None, x509.Certificate]]:
    """The certificates on the token (public objects: no login needed), each with its CKA_ID."""
    found = []
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
        try:
            found.append((obj[Attribute.ID] or None, x509.load_der_x509_certificate(obj[Attribute.VALUE])))
        except (ValueError, p11.AttributeTypeInvalid):
            continue  # a certificate object this code cannot read names no key of ours
    return found


def _public_der(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class TokenSigner:
    """A logged-in session and the key and certificate chosen on it; ``key`` is what signxml signs with.
    Close it (or use it as a context manager) to log out."""

    session: pkcs11.Session
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    label: str

    def close(self) -> None:
        try:
            self.session.close()
        except p11.PKCS11Error:
            pass  # the card went: there is no session left to close

    def __enter__(self) -> TokenSigner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_signer(ref: TokenRef, pin: str, *, cert: x509.Certificate | None = None) -> TokenSigner:
    """Log in to ``ref``'s token and choose its signing key: the one ``ref`` names, else the only private key
    whose certificate signs. Its certificate comes from the token (the object with the key's CKA_ID), or is
    ``cert``, which must then carry the token key's public key."""
    session = open_session(ref, pin)
    try:
        return _choose(session, ref, cert)
    except BaseException:
        session.close()
        raise


def _choose(session: pkcs11.Session, ref: TokenRef, given: x509.Certificate | None) -> TokenSigner:
    template = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
    if ref.key_label is not None:
        template[Attribute.LABEL] = ref.key_label
    if ref.key_id is not None:
        template[Attribute.ID] = ref.key_id
    keys = list(session.get_objects(template))
    if not keys:
        raise Refusal("token-key-not-found", f"{ref.describe()}: no such private key on the token")
    certificates = token_certificates(session)
    candidates = []
    for handle in keys:
        wrapped = _wrap(handle, None)
        public = _public_der(wrapped) if wrapped is not None else None
        matching = [c for key_id, c in certificates if key_id == handle[Attribute.ID] or (
            public is not None and _public_der(c) == public)]
        if given is not None:
            matching = [given] if public is None or _public_der(given) == public else []
            if not matching:
                continue
        for cert in matching:
            candidates.append((handle, cert))
    if not candidates:
        if given is not None:
            raise Refusal("token-cert-mismatch", f"{ref.describe()}: the certificate given is not the token key's")
        raise Refusal("token-no-signing-key", f"{ref.describe()}: no certificate on the token for its key; give "
                      "--cert")
    signing = [(h, c) for h, c in candidates if signs(c)]
    if not signing:
        raise Refusal("token-no-signing-key", f"{ref.describe()}: the key's certificate may not sign documents (its "
                      f"key usage has no {SIGNING_USAGE}: an encryption key?)")
    if len(signing) > 1:
        labels = sorted(str(h[Attribute.LABEL]) for h, _ in signing)
        raise Refusal("token-key-ambiguous", f"{ref.describe()}: several signing keys ({', '.join(labels)}); name one "
                      "with object= or --key-label")
    handle, cert = signing[0]
    return TokenSigner(session, _wrap(handle, cert), cert, str(handle[Attribute.LABEL]))


def _wrap(handle, cert: x509.Certificate | None):
    """The cryptography-typed object that signs through ``handle``; None when the token gives no public key
    and no certificate says it (the caller then matches by CKA_ID only)."""
    key_type = handle[Attribute.KEY_TYPE]
    public = cert.public_key() if cert is not None else _token_public_key(handle)
    if public is None:
        return None
    if key_type == KeyType.RSA and isinstance(public, rsa.RSAPublicKey):
        return TokenRsaKey(handle, public)
    if key_type == KeyType.EC and isinstance(public, ec.EllipticCurvePublicKey):
        return TokenEcKey(handle, public)
    raise Refusal("token-no-signing-key", f"the token key {handle[Attribute.LABEL]!r} is neither RSA nor ECDSA")


def _token_public_key(handle):
    """The public key of a private-key object, from its public twin (same CKA_ID) on the token."""
    session = handle.session
    try:
        twin = session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=handle[Attribute.ID])
    except (p11.NoSuchKey, p11.MultipleObjectsReturned, p11.AttributeTypeInvalid):
        return None
    if handle[Attribute.KEY_TYPE] == KeyType.RSA:
        return serialization.load_der_public_key(encode_rsa_public_key(twin))
    return serialization.load_der_public_key(encode_ec_public_key(twin))


SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
"""The DER DigestInfo prefix of a SHA-256 digest (RFC 8017 §9.2 note 1), for CKM_RSA_PKCS."""


class _MechanismMissing(Exception):
    """The token does not offer the mechanism asked for."""


def _signed(handle, data: bytes, mechanism: Mechanism) -> bytes:
    try:
        return handle.sign(data, mechanism=mechanism)
    except p11.MechanismInvalid:
        if mechanism is Mechanism.SHA256_RSA_PKCS:
            raise _MechanismMissing() from None
        raise Refusal("token-error", f"the token cannot sign with {mechanism.name}") from None
    except (p11.DeviceRemoved, p11.TokenNotPresent, p11.SessionHandleInvalid, p11.SessionClosed):
        raise Refusal("token-removed", "the card was removed while signing; nothing was signed") from None
    except p11.UserNotLoggedIn:
        raise Refusal("token-removed", "the token logged out (removed and inserted again?); sign again") from None
    except p11.PKCS11Error as exc:
        raise Refusal("token-error", f"the token could not sign: {type(exc).__name__}") from None


class _NothingToExport:
    """What the token's keys answer when asked for what only the token holds."""

    def private_bytes(self, *args, **kwargs):
        raise TypeError("the private key is on the token and cannot be exported")

    def private_numbers(self):
        raise TypeError("the private key is on the token and cannot be exported")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class TokenRsaKey(_NothingToExport, rsa.RSAPrivateKey):
    """An RSA key on a token; signs PKCS#1 v1.5 with SHA-256 (CKM_SHA256_RSA_PKCS), nothing else."""

    def __init__(self, handle, public: rsa.RSAPublicKey) -> None:
        self._handle = handle
        self._public = public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def sign(self, data: bytes, padding: AsymmetricPadding, algorithm) -> bytes:
        if not isinstance(padding, PKCS1v15) or not isinstance(algorithm, hashes.SHA256):
            raise TypeError("a token key signs RSA PKCS#1 v1.5 with SHA-256 only (the signature profile's)")
        try:
            return _signed(self._handle, data, Mechanism.SHA256_RSA_PKCS)
        except _MechanismMissing:
            # A card that hashes nothing itself (CKM_RSA_PKCS only): the same signature, the DigestInfo built here
            digest = hashes.Hash(hashes.SHA256())
            digest.update(data)
            return _signed(self._handle, SHA256_DIGEST_INFO + digest.finalize(), Mechanism.RSA_PKCS)

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        raise TypeError("a signing key on a token does not decrypt here")


class TokenEcKey(_NothingToExport, ec.EllipticCurvePrivateKey):
    """An ECDSA key on a token; signs ECDSA with SHA-256 (CKM_ECDSA over the digest), DER-encoded."""

    def __init__(self, handle, public: ec.EllipticCurvePublicKey) -> None:
        self._handle = handle
        self._public = public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        algorithm = getattr(signature_algorithm, "algorithm", None)
        if isinstance(algorithm, Prehashed) or not isinstance(algorithm, hashes.SHA256):
            raise TypeError("a token key signs ECDSA with SHA-256 only (the signature profile's)")
        digest = hashes.Hash(hashes.SHA256())
        digest.update(data)
        raw = _signed(self._handle, digest.finalize(), Mechanism.ECDSA)
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def exchange(self, algorithm, peer_public_key) -> bytes:
        raise TypeError("a signing key on a token does not agree keys here")
