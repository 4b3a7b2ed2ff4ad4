"""The five work points a voucher passes inside its agency, in order."""

from __future__ import annotations

import enum


class Role(enum.Enum):
    PREPARER = "preparer"  # 承辦人: prepares and submits the voucher
    REVIEWER = "reviewer"  # 覆核
    ACCOUNTANT = "accountant"  # 會計主管
    HEAD = "head"  # 首長
    RELEASER = "releaser"  # 放行人: sends the signed voucher onward

    @property
    def chinese(self) -> str:
        return _CHINESE[self]


_CHINESE = {
    Role.PREPARER: "承辦人",
    Role.REVIEWER: "覆核",
    Role.ACCOUNTANT: "會計主管",
    Role.HEAD: "首長",
    Role.RELEASER: "放行人",
}

STAGE_ORDER = (Role.PREPARER, Role.REVIEWER, Role.ACCOUNTANT, Role.HEAD, Role.RELEASER)
