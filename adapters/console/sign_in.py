"""Signing in to the console with the card (gateway/sign_in): the page, the challenge, the session, signing out.

The page's script (adapters/console/static/signer.js) asks the gateway for a challenge (a POST with the
page's CSRF token), hands it to the person's local signing agent, which has the card sign it, and posts the
signed challenge back. The gateway checks it (chain, revocation, a grant in force for the agency the browser
came through, the challenge's origin and expiry), uses its nonce once and only from the connection it was
issued to, and opens a session: a random token in a cookie (``Secure; HttpOnly; SameSite=Strict``, path
``/console``), of which the store keeps only the SHA-256, bound to the agency TLS certificate the browser
came through, ending at sign-out, after ``console.session_idle_minutes`` idle or ``console.session_hours``.
Every page then names the person and their roles. Each sign-in and sign-out is in the audit log.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass, replace

from adapters.console.html import Markup
from adapters.console.view import Reply, View
from gateway.errors import Refusal
from gateway.sign_in.challenge import challenge_document, check_sign_in, new_challenge
from gateway.sign_in.store import ConsoleSession
from gateway.store import AuditEvent

SESSION_COOKIE = "vgw_console_session"
_HOST = re.compile(r"[a-z0-9.\-]+(:[0-9]{1,5})?")
SIGNER_SCRIPT = Markup('<p id="signer-status"></p><script src="/console/static/signer.js"></script>')
"""Where signer.js says how a card signing went, and the script itself: once on every page with a card button."""


@dataclass(frozen=True)
class SessionSettings:
    """``console.signer_url``, ``console.session_idle_minutes`` and ``console.session_hours``."""

    signer_url: str = "http://127.0.0.1:61162"
    idle: datetime.timedelta = datetime.timedelta(minutes=15)
    lifetime: datetime.timedelta = datetime.timedelta(hours=8)


def session_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def origin_of(host: str | None) -> str:
    """The page's origin as the browser sends it (the console is https only)."""
    host = (host or "").lower()
    if not _HOST.fullmatch(host):
        raise Refusal("query-invalid", "the request names no usable Host")
    return f"https://{host}"


def session_cookie(token: str, max_age: int) -> str:
    return f"{SESSION_COOKIE}={token}; Path=/console; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict"


class SignInPages:
    """The sign-in routes' handlers; expects ``store``, ``intake`` (its ``platform``), ``csrf``, ``clock``
    and ``sessions`` (:class:`SessionSettings`) on the console."""

    def signer_data(self, view: View, document: str, submit: str) -> Markup:
        """The data attributes signer.js reads from every card button: the person's agent, the page's CSRF token,
        where the unsigned document comes from and where the signed one goes, and the words for waiting and for
        an agent that does not answer."""
        return Markup('data-agent="{}" data-csrf="{}" data-document="{}" data-submit="{}" data-agent-missing="{}" '
                      'data-working="{}"').format(self.sessions.signer_url, self.csrf.token(view.viewer), document,
                                                  submit, view.t["sign_in_agent_missing"], view.t["sign_in_working"])

    def sign_in_page(self, view: View) -> Reply:
        t = view.t
        if view.viewer.person:
            body = Markup('<p id="signed-in">{}: <strong>{}</strong> ({})</p>'
                          '<form method="post" action="/console/sign-out" class="inline"><input type="hidden" '
                          'name="csrf" value="{}"><button type="submit" id="sign-out">{}</button></form>').format(
                t["signed_in_person"], view.viewer.person, ", ".join(view.viewer.roles), self.csrf.token(view.viewer),
                t["sign_out"])
            return view.page(t["sign_in"], body)
        body = Markup('<p>{}</p><p><button type="button" id="sign-in-with-card" {} data-next="/console/">{}</button>'
                      '</p>{}').format(t["sign_in_hint"], self.signer_data(view, "/console/sign-in/challenge",
                                                                           "/console/sign-in"),
                                       t["sign_in_with_card"], SIGNER_SCRIPT)
        return view.page(t["sign_in"], body)

    def challenge_submit(self, view: View) -> Reply:
        now = self.clock()
        challenge = new_challenge(origin_of(view.host), os.urandom(32), now)
        self.store.record_challenge(challenge.nonce, view.viewer.fingerprint, challenge.issued_at, challenge.expires)
        return Reply(200, challenge_document(challenge), "application/xml")

    def sign_in_submit(self, view: View) -> Reply:
        now = self.clock()
        signed = (view.args.get("signed") or "").encode("utf-8")
        if not signed:
            raise Refusal("form-invalid", "post the signed challenge as 'signed'")
        checked = check_sign_in(signed, origin=origin_of(view.host), agency=view.viewer.agency,
                                platform=self.intake.platform, now=now)
        token = os.urandom(32).hex()
        roles = ",".join(sorted({g.role.value for g in checked.grants}))
        session = ConsoleSession(session_hash(token), view.viewer.agency, checked.name, roles,
                                 checked.identity.issuer, checked.identity.serial_hex, view.viewer.fingerprint,
                                 now, now, now + self.sessions.lifetime)
        event = AuditEvent(at=now, actor=f"person:{checked.identity.serial_hex}", action="console.sign-in",
                           subject=view.viewer.agency, detail={"person": checked.name, "roles": roles,
                                                               "cert_issuer": checked.identity.issuer})
        if not self.store.open_session(checked.nonce, session, event):
            raise Refusal("sign-in-replayed", "this challenge was used already, expired, or was issued to another "
                          "connection: sign in again")
        answer = {"person": checked.name, "roles": roles.split(","), "agency": view.viewer.agency,
                  "expires": session.expires_at.isoformat()}
        return Reply(200, json.dumps(answer, ensure_ascii=False).encode("utf-8"), "application/json",
                     {"Set-Cookie": session_cookie(token, int(self.sessions.lifetime.total_seconds()))})

    def sign_out_submit(self, view: View) -> Reply:
        if view.viewer.session_hash is not None:
            now = self.clock()
            self.store.end_session(view.viewer.session_hash, now, AuditEvent(
                at=now, actor=f"person:{view.viewer.cert_serial}", action="console.sign-out",
                subject=view.viewer.agency, detail={"person": view.viewer.person}))
        reply = view.page(view.t["sign_in"], Markup('<p id="signed-out">{}</p>').format(view.t["signed_out"]))
        return Reply(reply.status, reply.body, reply.content_type, {"Set-Cookie": session_cookie("", 0)})

    def signed_in(self, viewer, token: str | None, now: datetime.datetime):
        """``viewer`` with the person of its session cookie, when the session is open over this connection."""
        if not token:
            return viewer
        session = self.store.session(session_hash(token), viewer.fingerprint, now, self.sessions.idle)
        if session is None or session.agency != viewer.agency:
            return viewer
        return replace(viewer, person=session.person, roles=tuple(session.roles.split(",")),
                       session_hash=session.session_hash, cert_serial=session.cert_serial,
                       cert_issuer=session.cert_issuer)
