"""One root error for the core, and the refusal that carries a stable code back to whoever sent the input.

Following h11's split: :class:`Refusal` means "the peer sent something we will not accept" and carries
everything an adapter needs to answer (code, human message, XML line and path, HTTP status). Any other
exception escaping the core is our own bug and must be answered as such (500, logged), never leaked.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: a stable machine code, a human message and, for XML, where."""

    code: str
    message: str
    line: int | None = None
    path: str | None = None

    def as_dict(self) -> dict:
        out: dict = {"code": self.code, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        if self.path is not None:
            out["path"] = self.path
        return out

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.path:
            where.append(self.path)
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{prefix}{self.code}: {self.message}"


# HTTP status an adapter should answer with, by code family. Codes not listed answer 422.
_HTTP_STATUS = {
    "too-large": 413,
    "rate-limited": 429,
    "duplicate-conflict": 409,
    # The voucher's stored history does not allow this revision now (it may later, once the latest is
    # sent back): a conflict with the resource's state, not a defect of the document itself.
    "revision-not-accepted": 409,
    "signer-not-authorised": 403,
    "agency-mismatch": 403,
    "agency-unknown": 403,
    "client-certificate-required": 401,
    "certificate-untrusted": 403,
    "certificate-expired": 403,
    "certificate-not-yet-valid": 403,
    "certificate-key-usage": 403,
    "certificate-revoked": 403,
    "certificate-status-unknown": 403,
    "revocation-unavailable": 503,  # a revocation source is down: try again later, nothing is wrong with the input
    "not-found": 404,
    "method-not-allowed": 405,
    "bad-request": 400,
    "query-invalid": 400,
    "cursor-invalid": 400,
    "limit-invalid": 400,
    # The approval workflow: the document may be fine, but the voucher's state does not admit it now.
    "action-voucher-mismatch": 409,
    "action-out-of-order": 409,
    "action-chain-broken": 409,
    "voucher-not-pending": 409,
    "separation-of-duties": 403,
    "voucher-busy": 503,
    "statement-busy": 503,  # GET /v1/statements: other PDFs are rendering; Retry-After
    "statement-too-large": 413,  # a PDF of more entries than it prints: CSV or a shorter period
    "not-ready": 503,  # /readyz: the store or a configured AMQP connection is not available
    # Allotted budgets (vgw budget load, the treasury checks).
    "budget-exceeded": 409,
    "budget-allotment-too-low": 409,
    "budget-reservation-unknown": 409,
    "budget-reservation-conflict": 409,  # lost a race with another decision on the same voucher MAX_ATTEMPTS times: retry
    # A person's card (PKCS#11 token) behind the local signing agent: the document is fine, the card is not.
    "token-pin-incorrect": 403,
    "token-pin-locked": 423,
    "token-pin-missing": 503,
    "token-module-missing": 503,
    "token-not-found": 409,
    "token-not-present": 409,
    "token-removed": 409,
    "token-key-not-found": 409,
    "token-key-ambiguous": 409,
    "token-no-signing-key": 409,
    "token-cert-mismatch": 409,
    "token-error": 502,
    # The local signing agent's own refusals of a request.
    "signer-host-refused": 421,
    "signer-origin-refused": 403,
    "signer-media-type": 415,
    "signer-body-too-large": 413,
    "signer-document-stale": 409,
    "signer-not-found": 404,
    # Signing in to the console with the card.
    "sign-in-replayed": 409,
    "sign-in-expired": 403,
    "sign-in-origin-mismatch": 403,
    "sign-in-not-registered": 403,
    "sign-in-required": 401,
    "action-signer-not-signed-in": 403,
    "voucher-signer-not-signed-in": 403,
}


class GatewayError(Exception):
    """Root of every error the core raises on purpose."""


@dataclass
class Refusal(GatewayError):
    """The input is refused. ``problems`` lists every reason found (at least one); ``code`` is the first's."""

    problems: list[Problem] = field(default_factory=list)

    def __init__(self, code_or_problems: str | list[Problem], message: str = "", *, line: int | None = None,
                 path: str | None = None) -> None:
        if isinstance(code_or_problems, str):
            problems = [Problem(code_or_problems, message, line, path)]
        else:
            problems = list(code_or_problems)
        if not problems:
            raise ValueError("a Refusal needs at least one problem")
        self.problems = problems
        super().__init__(str(problems[0]))

    @property
    def code(self) -> str:
        return self.problems[0].code

    @property
    def message(self) -> str:
        return self.problems[0].message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 422)

    def __str__(self) -> str:
        return str(self.problems[0])
