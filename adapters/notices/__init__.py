"""Sending deposit notices: the worker, e-mail (SMTP), fax, postal letters, their setup and status."""
