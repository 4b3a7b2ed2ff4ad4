"""Naming a key on a token (RFC 7512 URIs), finding its PIN, and what a locked or wrong PIN says — the parts
of adapters/tokens/ that need no token. The token itself: tests/integration/test_token_signing.py (SoftHSM2)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pkcs11 import TokenFlag

from adapters.tokens import keys
from adapters.tokens.keys import TokenRsaKey, open_session, tries_left
from adapters.tokens.pins import PIN_ENV, read_pin
from adapters.tokens.uri import TokenRef, parse_pkcs11_uri
from gateway.errors import Refusal

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def test_a_uri_names_its_token_key_module_and_pin_source() -> None:
    ref = parse_pkcs11_uri("pkcs11:token=My%20Card;object=signature;id=%01%02;type=private"
                           f"?module-path={MODULE}&pin-source=file:/run/pin")
    assert ref == TokenRef(module=MODULE, token_label="My Card", key_label="signature", key_id=b"\x01\x02",
                           pin_source="file:/run/pin")
    assert parse_pkcs11_uri("pkcs11:serial=ABC123", module=MODULE).token_serial == "ABC123"
    assert "PIN" not in ref.describe() and "/run/pin" not in ref.describe()


@pytest.mark.parametrize("uri, words", [
    ("file:/tmp/key.pem", "begins with pkcs11:"),
    ("pkcs11:token=a;colour=red?module-path=/x.so", "'colour'"),
    ("pkcs11:token=a;token=b?module-path=/x.so", "twice"),
    ("pkcs11:token=a;type=cert?module-path=/x.so", "private"),
    ("pkcs11:token?module-path=/x.so", "no value"),
    ("pkcs11:token=a", "no PKCS#11 module"),
    ("pkcs11:object=k?module-path=/x.so", "no token"),
    ("pkcs11:token=%ff?module-path=/x.so", "UTF-8"),
])
def test_a_uri_that_could_select_the_wrong_key_is_refused(uri: str, words: str) -> None:
    with pytest.raises(Refusal) as caught:
        parse_pkcs11_uri(uri)
    assert caught.value.code == "token-uri-invalid" and words in caught.value.message


def test_the_pin_comes_from_a_file_then_the_uri_then_the_environment_never_from_nowhere(tmp_path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text("123456\n", encoding="utf-8")
    ref = TokenRef(module=MODULE, token_label="card", pin_source=f"file:{pin_file}")
    assert read_pin(ref, environ={}) == "123456"
    assert read_pin(TokenRef(module=MODULE, token_label="card", pin_value="654321"), environ={}) == "654321"
    bare = TokenRef(module=MODULE, token_label="card")
    assert read_pin(bare, environ={PIN_ENV: "111111"}) == "111111"
    with pytest.raises(Refusal) as caught:
        read_pin(bare, environ={}, prompt=False)
    assert caught.value.code == "token-pin-missing"
    (tmp_path / "empty").write_text("", encoding="utf-8")
    with pytest.raises(Refusal):
        read_pin(bare, pin_file=str(tmp_path / "empty"), environ={})


class FakeToken:
    """A token whose flags say what a card would (SoftHSM2 never locks its PIN, so a fake plays a locked card)."""

    label = "card"

    def __init__(self, flags: TokenFlag) -> None:
        self.flags = flags
        self.logins = 0

    def open(self, **kwargs):
        self.logins += 1
        raise AssertionError("a locked PIN must not be tried")


def test_a_locked_pin_is_refused_before_it_is_tried(monkeypatch) -> None:
    token = FakeToken(TokenFlag.USER_PIN_INITIALIZED | TokenFlag.USER_PIN_LOCKED)
    monkeypatch.setattr(keys, "find_token", lambda ref: token)
    with pytest.raises(Refusal) as caught:
        open_session(TokenRef(module=MODULE, token_label="card"), "123456")
    assert caught.value.code == "token-pin-locked" and "PUK" in caught.value.message and token.logins == 0


def test_what_the_token_says_of_the_tries_left() -> None:
    assert "one try" in tries_left(TokenFlag.USER_PIN_FINAL_TRY)
    assert "few tries" in tries_left(TokenFlag.USER_PIN_COUNT_LOW)
    assert "locked" in tries_left(TokenFlag.USER_PIN_LOCKED | TokenFlag.USER_PIN_COUNT_LOW)
    assert "does not say" in tries_left(TokenFlag(0))


def test_a_token_key_signs_only_the_profiles_algorithm_and_exports_nothing() -> None:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    key = TokenRsaKey(handle=None, public=public)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048 and key.public_key() is public
    with pytest.raises(TypeError):
        key.sign(b"x", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    with pytest.raises(TypeError):
        key.sign(b"x", padding.PKCS1v15(), hashes.SHA1())
    with pytest.raises(TypeError):
        key.private_numbers()
    with pytest.raises(TypeError):
        key.private_bytes()


class RawOnlyHandle:
    """A card's key that offers CKM_RSA_PKCS only: the DigestInfo must be built before it signs."""

    def __init__(self, private: rsa.RSAPrivateKey) -> None:
        self.private = private
        self.asked: list = []

    def sign(self, data: bytes, mechanism):
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
        from pkcs11 import Mechanism
        from pkcs11.exceptions import MechanismInvalid

        self.asked.append(mechanism)
        if mechanism is Mechanism.SHA256_RSA_PKCS:
            raise MechanismInvalid()
        assert data.startswith(keys.SHA256_DIGEST_INFO)
        return self.private.sign(data[len(keys.SHA256_DIGEST_INFO):], padding.PKCS1v15(), Prehashed(hashes.SHA256()))


def test_a_card_without_hashing_signs_the_same_signature_through_raw_pkcs1() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    handle = RawOnlyHandle(private)
    signature = TokenRsaKey(handle, private.public_key()).sign(b"SignedInfo", padding.PKCS1v15(), hashes.SHA256())
    private.public_key().verify(signature, b"SignedInfo", padding.PKCS1v15(), hashes.SHA256())
    assert [m.name for m in handle.asked] == ["SHA256_RSA_PKCS", "RSA_PKCS"]
