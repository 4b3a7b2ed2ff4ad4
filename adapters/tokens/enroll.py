"""Putting a new signing key on a token, as a card is issued: generated on the token, non-extractable
(CKA_EXTRACTABLE false, CKA_SENSITIVE true), its certificate stored beside it under the same CKA_ID.

The issuer (the test PKI's CA, simulators/pki) sees only the public key; the private key exists nowhere but
in the token's store.
"""

from __future__ import annotations

import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from adapters.tokens.keys import open_session
from adapters.tokens.uri import TokenRef
from gateway.errors import Refusal

KEY_KINDS = ("rsa", "ec")
DEFAULT_KEY_LABEL = "signature"


class Enrolment:
    """A key just made on a token, waiting for its certificate: ``public_key`` goes to the issuer, the
    certificate it signs comes back to :meth:`store_certificate`. Close (or ``with``) to log out."""

    def __init__(self, session, key_id: bytes, label: str, public_key) -> None:
        self.session = session
        self.key_id = key_id
        self.label = label
        self.public_key = public_key

    def store_certificate(self, cert: x509.Certificate) -> None:
        """Store ``cert`` on the token beside its key (same label, same CKA_ID), as a card holds it."""
        if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
                != self.public_key.public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ValueError("the certificate is not for the key just made")
        self.session.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True, Attribute.LABEL: self.label, Attribute.ID: self.key_id,
            Attribute.SUBJECT: cert.subject.public_bytes(), Attribute.ISSUER: cert.issuer.public_bytes(),
            Attribute.SERIAL_NUMBER: cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big"),
            Attribute.VALUE: cert.public_bytes(serialization.Encoding.DER)})

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Enrolment:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def enrol_key(ref: TokenRef, pin: str, *, kind: str = "rsa", label: str | None = None) -> Enrolment:
    """Generate a signing key pair on ``ref``'s token: RSA-2048 (the citizen cards) or ECDSA P-256. The private
    half is sensitive, non-extractable and may only sign; a key already under that label is refused
    (``token-key-exists``), so a card's key is never replaced by mistake."""
    if kind not in KEY_KINDS:
        raise ValueError(f"key kind {kind!r} is not one of {KEY_KINDS}")
    label = label or ref.key_label or DEFAULT_KEY_LABEL
    session = open_session(ref, pin)
    try:
        if list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})):
            raise Refusal("token-key-exists", f"token {ref.token_label!r} already holds a key labelled {label!r}")
        key_id = os.urandom(8)
        private = {Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.SIGN: True,
                   Attribute.DECRYPT: False, Attribute.UNWRAP: False, Attribute.DERIVE: False, Attribute.TOKEN: True,
                   Attribute.PRIVATE: True}
        public = {Attribute.VERIFY: True, Attribute.ENCRYPT: False, Attribute.WRAP: False, Attribute.TOKEN: True}
        try:
            if kind == "rsa":
                pub, _priv = session.generate_keypair(KeyType.RSA, 2048, id=key_id, label=label, store=True,
                                                      public_template=public, private_template=private)
                der = encode_rsa_public_key(pub)
            else:
                parameters = session.create_domain_parameters(
                    KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
                pub, _priv = parameters.generate_keypair(id=key_id, label=label, store=True,
                                                         public_template=public, private_template=private)
                der = encode_ec_public_key(pub)
        except p11.PKCS11Error as exc:
            raise Refusal("token-error", f"the token could not make the key: {type(exc).__name__}") from None
        return Enrolment(session, key_id, label, serialization.load_der_public_key(der))
    except BaseException:
        session.close()
        raise
