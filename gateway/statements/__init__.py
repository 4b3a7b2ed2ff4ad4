"""Statements (對帳單): the statement lines and entries, CSV and camt.053. Built on gateway.bank."""
