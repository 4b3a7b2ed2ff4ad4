"""Deposit notices (入戶通知): what a notice says and its store port. Built on gateway.vouchers and the store port."""
