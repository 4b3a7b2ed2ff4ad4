"""Statements over the wire: the statement service (CSV, camt.053, PDF), the PDF renderer, the CJK font."""
