"""``vgw signer serve``: the local signing agent on a person's own PC, what a gateway page talks to so that the
person's card signs (as Taiwanese government sites reach the citizen card through a local service).

It listens on 127.0.0.1 only, answers only the gateway origins it is configured with, takes only documents
of the gateway's own schemas, says what it is about to sign as read from the document itself, and signs
with the card's key (adapters/tokens). Imports the shared modules and adapters.tokens.
"""
