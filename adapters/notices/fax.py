"""Faxing a deposit notice: a small pluggable interface with two implementations.

Which one is a setting (``notices.fax_mode``), because how a city office faxes varies:

- :class:`FaxByEmail` (``email``, the default): an e-mail to an e-mail-to-fax gateway, addressed by a
  format such as ``{number}@fax.gov.taipei`` (``notices.fax_address_format``), with the notice as plain
  text and its one-page letter as a PDF attachment, through the same SMTP client as e-mail notices (so
  4xx/5xx answers mean what they mean there).
- :class:`FaxSpool` (``spool``): a folder a fax server watches (HylaFAX's ``faxq`` helpers, a Windows fax
  service's hot folder). One PDF per notice, named by its EndToEndId (the same name on every attempt, so
  an attempt repeated after a crash replaces the file rather than faxing twice), and a JSON control file
  beside it naming the number. Each is written atomically (temporary file + rename); the control file
  last, so a watcher that keys on it never finds its document missing.

Both fire with an :class:`~gateway.notices.content.AttemptResult` and the message id they used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from twisted.internet import defer
from twisted.internet.threads import deferToThread

from adapters.notices.letters import render_letters, write_atomically
from adapters.notices.mail import build_message, sender_address
from gateway.notices.content import AttemptResult, DepositNotice, NoticeText, Result, fax_digits
from gateway.notices.content import message_id as notice_message_id

DEFAULT_FAX_FORMAT = "{number}@fax.gov.taipei"


class Deliverer(Protocol):
    def deliver(self, notice: DepositNotice, text: NoticeText) -> defer.Deferred:
        """Send ``notice``; fires with ``(AttemptResult, message_id)``, never errbacks."""


class FaxByEmail:
    def __init__(self, sender, *, address_format: str = DEFAULT_FAX_FORMAT, font: Callable[[], str] | None = None,
                 clock) -> None:
        if "{number}" not in address_format:
            raise ValueError("notices.fax_address_format must contain {number}")
        self.sender = sender
        self.address_format = address_format
        self.font = font
        self.clock = clock

    def address(self, number: str) -> str:
        return self.address_format.format(number=fax_digits(number))

    def deliver(self, notice: DepositNotice, text: NoticeText) -> defer.Deferred:
        mid = notice_message_id(notice.end_to_end_id, self.sender.settings.domain)
        to = self.address(notice.target.address)

        def build() -> bytes:  # rendering the page is CPU work: off the reactor
            pdf = render_letters([(notice, text)], font=self.font()) if self.font else None
            return build_message(text, sender=sender_address(self.sender.settings.sender), to=to, message_id=mid,
                                 at=self.clock(), html=False, pdf=pdf, pdf_name=f"{notice.end_to_end_id}.pdf")

        d = deferToThread(build)
        d.addCallback(lambda body: self.sender.send(to, body))
        return d.addCallback(lambda result: (result, mid))


class FaxSpool:
    def __init__(self, directory: Path, *, font: Callable[[], str]) -> None:
        self.directory = Path(directory)
        self.font = font

    def deliver(self, notice: DepositNotice, text: NoticeText) -> defer.Deferred:
        return deferToThread(self.write, notice, text)

    def write(self, notice: DepositNotice, text: NoticeText) -> tuple[AttemptResult, str]:
        name = notice.end_to_end_id
        try:
            write_atomically(self.directory / f"{name}.pdf", render_letters([(notice, text)], font=self.font()))
            control = {"to": fax_digits(notice.target.address), "document": f"{name}.pdf",
                       "notice": notice.end_to_end_id, "subject": text.subject}
            write_atomically(self.directory / f"{name}.json",
                             json.dumps(control, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        except OSError as exc:  # a full disk or a missing mount: try again later
            return AttemptResult(Result.TRANSIENT, f"cannot write to the fax spool {self.directory}: {exc}"), name
        return AttemptResult(Result.DELIVERED, f"spooled to {self.directory}"), f"{name}.json"
