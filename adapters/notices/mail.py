"""A deposit notice as an Internet message (RFC 5322 + MIME), built with Python's ``email`` package.

multipart/alternative with a text/plain and a text/html part in UTF-8 (base64) (the HTML last: mail readers show
the last part they can render), the Subject and the sender's display name encoded as RFC 2047 words, and a
Message-ID derived from the notice (gateway/notices/content.py ``message_id``), so the same notice sent
again after a crash carries the same id. A fax sent through an e-mail-to-fax gateway gets the plain text
and, when given, the letter page as a PDF attachment (what such gateways put on paper).
"""

from __future__ import annotations

import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from gateway.notices.content import SENDER, NoticeText

_POLICY = SMTP.clone(linesep="\n")


def sender_address(address: str, name: str = SENDER) -> Address:
    """``name <address>``; ValueError for an address the ``email`` package cannot parse."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an e-mail address: {address!r}")
    return Address(display_name=name, username=local, domain=domain)


def build_message(text: NoticeText, *, sender: Address, to: str, message_id: str, at: datetime.datetime,
                  html: bool = True, pdf: bytes | None = None, pdf_name: str = "notice.pdf") -> bytes:
    """The message's bytes with LF line ends: Twisted's SMTP client turns each LF into CRLF on the wire (CRLF
    here would go out as CR CR LF and break every header). Bodies are base64: Chinese text survives any relay,
    8BITMIME or not."""
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = text.subject
    message["Date"] = format_datetime(at)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders should not answer
    message.set_content(text.plain, charset="utf-8", cte="base64")
    if html:
        message.add_alternative(text.html, subtype="html", charset="utf-8", cte="base64")
    if pdf is not None:
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename=pdf_name)
    return message.as_bytes()
