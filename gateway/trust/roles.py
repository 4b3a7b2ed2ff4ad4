"""The five work points a voucher passes inside its agency, in order, and the treasury operator after them."""

from __future__ import annotations

import enum


class Role(enum.Enum):
    PREPARER = "preparer"  # 承辦人: prepares and submits the voucher
    REVIEWER = "reviewer"  # 覆核
    ACCOUNTANT = "accountant"  # 會計主管
    HEAD = "head"  # 首長
    RELEASER = "releaser"  # 放行人: sends the signed voucher onward
    TREASURY = "treasury"  # 財政局 operator: decides vouchers the treasury checks hold (grants name TREASURY_AGENCY)

    @property
    def chinese(self) -> str:
        return _CHINESE[self]


_CHINESE = {
    Role.PREPARER: "承辦人",
    Role.REVIEWER: "覆核",
    Role.ACCOUNTANT: "會計主管",
    Role.HEAD: "首長",
    Role.RELEASER: "放行人",
    Role.TREASURY: "財政局",
}

STAGE_ORDER = (Role.PREPARER, Role.REVIEWER, Role.ACCOUNTANT, Role.HEAD, Role.RELEASER)

TREASURY_AGENCY = "379030000A"
"""The agency code of the Taipei City Finance Bureau (臺北市政府財政局) as this gateway names it: treasury
operators' grants and TLS certificates carry it, and it may act on every agency's vouchers."""
