"""What the ISO 20022 codes in a bank report mean: status reasons, return reasons, payment statuses.

A pain.002 says *why* a payment was rejected with a four-letter ExternalStatusReason1Code (``AC01``, ``AM04``),
a camt.054 return with an ExternalReturnReason1Code, and every status with an external status code (``ACSC``,
``RJCT``). Agencies and treasury operators must read "account number is invalid or missing", not ``AC01``:
this module turns codes into text. The code sets are package data (``data/iso20022-status-reasons.json``,
provenance in ``data/SOURCES.md``), read once per process.

Why lookups answer ``None`` rather than refuse: the code sets are *external* — ISO adds codes every quarter
without a new message version, so a bank may rightly send a code newer than our copy. A report is never
refused for an unknown code; it is shown as the bare code until the data file is refreshed.

Why "name" is a short text: the published code-set extract we ship carries no ISO ``Name`` column (e.g.
``IncorrectAccountNumber``); the first line of the definition ("Account number is invalid or missing") is
the short form people read in lists, the whole definition is for a detail view.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

DATA_FILE = "iso20022-status-reasons.json"

STATUS_REASONS = "ExternalStatusReason1Code"  # pain.002 StsRsnInf/Rsn/Cd
RETURN_REASONS = "ExternalReturnReason1Code"  # camt.054 TxDtls/RtrInf/Rsn/Cd
TRANSACTION_STATUSES = "ExternalPaymentTransactionStatus1Code"  # pain.002 TxSts
GROUP_STATUSES = "ExternalPaymentGroupStatus1Code"  # pain.002 GrpSts, PmtInfSts
CODE_SETS = (STATUS_REASONS, RETURN_REASONS, TRANSACTION_STATUSES, GROUP_STATUSES)


@functools.cache
def _code_sets() -> Mapping[str, Mapping[str, tuple[str, str]]]:
    """Every shipped code set: set name -> code -> (name, definition). Read-only views, so no caller can
    change what another sees."""
    raw = json.loads(resources.files("gateway").joinpath("data", DATA_FILE).read_bytes().decode("utf-8"))
    sets = {}
    for set_name in CODE_SETS:
        entries = raw["code_sets"][set_name]
        sets[set_name] = MappingProxyType({code: (entry["name"], entry["definition"])
                                           for code, entry in entries.items()})
    return MappingProxyType(sets)


def code_set(set_name: str) -> Mapping[str, tuple[str, str]]:
    """One whole code set (one of :data:`CODE_SETS`): code -> (name, definition)."""
    return _code_sets()[set_name]


def _lookup(set_name: str, code: str | None, part: int) -> str | None:
    if not isinstance(code, str):
        return None
    entry = _code_sets()[set_name].get(code.strip())
    return None if entry is None else entry[part]


def reason_name(code: str | None) -> str | None:
    """Short text of a status reason code (``AC01`` -> "Account number is invalid or missing"), or None."""
    return _lookup(STATUS_REASONS, code, 0)


def reason_definition(code: str | None) -> str | None:
    """ISO's full definition of a status reason code, or None when the code is not in our copy."""
    return _lookup(STATUS_REASONS, code, 1)


def return_reason_name(code: str | None) -> str | None:
    """Short text of a return reason code (camt.054 ``RtrInf``), or None. The return reasons are a code set of
    their own: ``AC01`` there reads "Format of the account number specified is not correct"."""
    return _lookup(RETURN_REASONS, code, 0)


def return_reason_definition(code: str | None) -> str | None:
    """ISO's full definition of a return reason code, or None."""
    return _lookup(RETURN_REASONS, code, 1)


def status_name(code: str | None) -> str | None:
    """Short text of a payment status code, transaction-level (``TxSts``) first, else group-level (``GrpSts``,
    ``PmtInfSts``; ``PART`` is only there), or None."""
    return _lookup(TRANSACTION_STATUSES, code, 0) or _lookup(GROUP_STATUSES, code, 0)


def status_definition(code: str | None) -> str | None:
    """ISO's full definition of a payment status code (transaction-level first, else group-level), or None."""
    return _lookup(TRANSACTION_STATUSES, code, 1) or _lookup(GROUP_STATUSES, code, 1)


def describe_reason(code: str | None, text: str | None = None, *, returned: bool = False) -> str | None:
    """One line for people: ``"AC01 Account number is invalid or missing: <bank's text>"``. ``returned``
    reads the code as a camt.054 return reason. None when there is neither code nor text."""
    name = (return_reason_name if returned else reason_name)(code)
    head = " ".join(part for part in (code, name) if part)
    if head and text:
        return f"{head}: {text}"
    return head or text or None
