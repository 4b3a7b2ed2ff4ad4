"""The treasury's part: its checks of an approved voucher and the allotted budgets. Built on gateway.workflow."""
