"""RFC 9457 problem documents (``application/problem+json``) for refusals and for our own failures.

Pure: a refusal in, a JSON-ready dict out; the HTTP adapter serialises it and sets the status and media
type. One ``type`` URI per stable error code, ``https://vgw.taipei.gov.tw/problems/{code}``: RFC 9457
makes ``type`` the primary identifier of a problem, so it must be as stable as the code itself; the
host is the gateway's public name, and a page for each code may be served there later (RFC 9457 lets a
type URI be a name that is not dereferenceable). ``code`` repeats the code as a plain member, because
agencies' systems match on it. ``title`` is fixed per code (RFC 9457 says it should not change from
occurrence to occurrence); everything particular to this request goes into ``detail`` and ``errors``.
"""

from __future__ import annotations

from gateway.errors import Refusal

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://vgw.taipei.gov.tw/problems/"
INTERNAL_ERROR_CODE = "internal-error"

# One short, fixed title per stable code (docs/api.md lists them all; a test keeps the two in step).
TITLES: dict[str, str] = {
    "xml-malformed": "The document is not well-formed XML",
    "xml-forbidden-construct": "The document uses a forbidden XML construct",
    "too-large": "The document is too large",
    "too-deep": "The document nests too deeply",
    "schema-invalid": "The document does not follow its schema",
    "amount-not-positive": "An amount is not above zero",
    "line-count-mismatch": "The line count does not match the lines",
    "control-total-mismatch": "The control total does not match the lines",
    "line-number-sequence": "The lines are not numbered in sequence",
    "payee-id-invalid": "A payee identifier is not valid",
    "bank-branch-unknown": "A bank branch is not in the FISC list",
    "bank-not-reachable": "A bank takes no interbank remittances",
    "fiscal-year-out-of-range": "The fiscal year is out of range",
    "prepared-in-future": "The preparation date lies in the future",
    "correction-reference-missing": "A correction does not name the revision it corrects",
    "correction-reference-invalid": "A correction names a revision it cannot correct",
    "signature-missing": "The document is not signed",
    "signature-multiple": "The document carries more than one signature",
    "signature-misplaced": "The signature is not the document's last child",
    "signature-reference-forbidden": "The signature references something outside the profile",
    "signature-transform-forbidden": "The signature uses a transform outside the profile",
    "signature-algorithm-forbidden": "The signature uses an algorithm outside the profile",
    "signature-key-info-invalid": "The signature's KeyInfo is not one X.509 certificate",
    "signature-id-duplicated": "An id occurs more than once",
    "signature-invalid": "The signature does not verify",
    "signature-time-invalid": "The signing time is missing or out of bounds",
    "certificate-untrusted": "The signer's certificate is not trusted",
    "certificate-expired": "The signer's certificate has expired",
    "certificate-not-yet-valid": "The signer's certificate is not yet valid",
    "certificate-key-usage": "The certificate may not be used for this purpose",
    "certificate-revoked": "The certificate is revoked",
    "certificate-status-unknown": "The certificate's revocation status is unknown",
    "revocation-unavailable": "The certificate's revocation status could not be checked",
    "signer-not-authorised": "The signer holds no such role for this agency",
    "agency-mismatch": "The voucher belongs to another agency than the caller",
    "duplicate-conflict": "This voucher revision was already received with other content",
    "revision-not-accepted": "This voucher revision is not accepted now",
    "receipt-signer-unexpected": "The receipt is not signed by the gateway",
    "rate-limited": "Too many requests",
    "cursor-invalid": "The paging cursor is not valid",
    "limit-invalid": "The page size is out of range",
    INTERNAL_ERROR_CODE: "Internal error",
    "agency-unknown": "The caller names no agency known to the registry",
    "client-certificate-required": "A client certificate is required",
    "not-found": "No such resource for this caller",
    "query-invalid": "The query parameters are not valid",
    "method-not-allowed": "The method is not allowed on this resource",
    "bad-request": "The request is not understood",
    "action-reason-missing": "A rejection does not say why",
    "action-reason-forbidden": "An approval carries a rejection reason",
    "action-decision-invalid": "This stage cannot take this decision",
    "action-voucher-mismatch": "The action is about other voucher bytes",
    "action-out-of-order": "The voucher does not await this decision now",
    "action-chain-broken": "The action does not name the previous signed document",
    "voucher-not-pending": "The voucher's workflow has ended",
    "separation-of-duties": "The signer already signed another stage of this voucher",
    "voucher-busy": "The voucher changed while the request was decided",
    "not-ready": "The gateway is not ready to serve",
    "statement-busy": "Another PDF statement is being rendered; try again shortly",
    "statement-too-large": "The statement is too long for a PDF; ask for CSV or camt.053, or a shorter period",
    "calendar-file-invalid": "The working-day calendar file is not valid",
    "budget-file-invalid": "The allotment file is not valid",
    "budget-unknown": "There is no allotted budget for this subject",
    "budget-exceeded": "The amount exceeds the remaining allotted budget",
    "budget-allotment-too-low": "An allotment would fall below what is already committed",
    "budget-reservation-unknown": "No budget reservation exists for this voucher",
    "budget-reservation-conflict": "The voucher's budget reservation conflicts",
    "bank-message-type-unexpected": "The bank message is not of a type expected here",
    "bank-signer-unexpected": "The bank message is not signed by the pinned certificate",
    "bank-report-invalid": "The bank report cannot be read",
    "bank-amount-invalid": "A bank report amount is not whole New Taiwan dollars above zero",
    "bank-account-unexpected": "The bank report is about another account than the treasury account",
    "bank-outcome-conflict": "The bank report contradicts what the bank reported before",
    "bank-reference-unknown": "The bank report names a payment, group or message the gateway never sent",
    "bank-amount-mismatch": "The bank report states another amount than the payment sent",
    "bank-report-conflict": "A bank report id was received before with other content",
    "bank-sender-unexpected": "The bank message names another sender than the bank this gateway exchanges with",
    "bank-receiver-unexpected": "The bank message is addressed to another receiver than this gateway",
    "bank-message-id-mismatch": "The bank message's envelope id is not its document's own message id",
    "bank-original-mismatch": "The bank report's account of the message it answers disagrees with the message sent",
    "bank-booking-conflict": "The bank reports a second booking of a payment on another date",
    "token-uri-invalid": "The PKCS#11 URI does not name one key",
    "token-pin-missing": "No PIN was given for the token",
    "token-module-missing": "The PKCS#11 module cannot be loaded",
    "token-not-found": "The token named is not inserted",
    "token-not-present": "The card reader holds no card",
    "token-pin-incorrect": "The PIN is not the token's",
    "token-pin-locked": "The token's PIN is locked",
    "token-key-not-found": "The token holds no such key",
    "token-key-ambiguous": "The token holds several signing keys; name one",
    "token-key-exists": "The token already holds a key under that label",
    "token-no-signing-key": "The token's key has no certificate that may sign",
    "token-cert-mismatch": "The certificate given is not the token key's",
    "token-removed": "The card was removed while signing",
    "token-error": "The token failed",
    "signer-host-refused": "The signing agent answers only at its loopback address",
    "signer-origin-refused": "The signing agent does not sign for this page's origin",
    "signer-media-type": "The signing agent takes XML documents only",
    "signer-body-too-large": "The document is too large for the signing agent",
    "signer-document-refused": "The signing agent does not sign this document",
    "signer-document-stale": "The action is not to be signed now",
    "signer-not-found": "The signing agent has no such route",
    "sign-in-replayed": "The sign-in challenge was used already, expired or is another connection's",
    "sign-in-expired": "The sign-in challenge has expired",
    "sign-in-origin-mismatch": "The sign-in challenge is for another site",
    "sign-in-not-registered": "The signer holds no role for this agency now",
    "sign-in-required": "Sign in with your card first",
    "action-signer-not-signed-in": "The action is signed by another card than the signed-in person's",
    "voucher-signer-not-signed-in": "The voucher is signed by another card than the signed-in person's",
}
_FALLBACK_TITLE = "The request was refused"


def problem_type(code: str) -> str:
    """The ``type`` URI of a code."""
    return PROBLEM_TYPE_BASE + code


def problem_document(refusal: Refusal, *, instance: str | None = None) -> dict:
    """The problem document answering ``refusal``: RFC 9457 members plus ``code`` and ``errors``.

    ``errors`` lists every problem found, each with its code, message and, for XML, line and path, so an
    agency can fix all of them in one round. ``detail`` is the first problem's message, prefixed with the
    count when there are several. ``instance`` identifies this occurrence (e.g. a request id) when given.
    """
    first = refusal.problems[0]
    count = len(refusal.problems)
    detail = first.message if count == 1 else f"{count} problems; the first: {first.message}"
    document = {
        "type": problem_type(refusal.code),
        "title": TITLES.get(refusal.code, _FALLBACK_TITLE),
        "status": refusal.http_status,
        "detail": detail,
        "code": refusal.code,
        "errors": [problem.as_dict() for problem in refusal.problems],
    }
    if instance is not None:
        document["instance"] = instance
    return document


def problem_for_internal_error(instance: str | None = None) -> dict:
    """The answer to a failure of our own (HTTP 500).

    It takes no exception on purpose: exception text can carry paths, SQL, key material or another
    agency's data, and is for the log only. ``instance`` (a request id also written to the log) is what
    lets an operator find the cause from an agency's report.
    """
    document = {
        "type": problem_type(INTERNAL_ERROR_CODE),
        "title": TITLES[INTERNAL_ERROR_CODE],
        "status": 500,
        "detail": "The gateway could not process this request. It is safe to send the same document again "
                  "later: one already stored is answered with its original receipt.",
        "code": INTERNAL_ERROR_CODE,
        "errors": [],
    }
    if instance is not None:
        document["instance"] = instance
    return document
