"""Two outbox relays on one store, as two ``vgw serve --bank-exchange`` gateways run them.

The relay does not claim rows: each reads the unsent transfer messages and publishes them, marking each sent
after the broker's confirm. Two relays pumping at once can therefore both publish a message (at least once,
by design, as after a crash between confirm and mark). What makes that safe is that the outbox holds the
signed bytes: a second publication is the very same message (same MsgId, same EndToEndIds, same bytes), which
the bank recognises and answers again from memory, and the gateway takes the repeated reports as repeats.
These tests pin that: the relays run concurrently on SQLite and on PostgreSQL, every message is marked sent
once, every publication of a message is byte-identical, and the bank books every payment exactly once."""

from __future__ import annotations

import collections

from twisted.internet import defer

from adapters.bank_exchange import OutboxRelay

from .test_bank_exchange import World, assert_reconciled, clock, in_process  # noqa: F401  (fixtures)
from .test_store_contract import backend, pg_database  # noqa: F401
from .twisted_reactor import call, eventually, reactor_thread  # noqa: F401


class Recording:
    """A bank transport that records every publication before passing it on."""

    def __init__(self, transport) -> None:
        self.transport = transport
        self.published: list[tuple[str, bytes]] = []

    def publish(self, message_id, routing, body, headers):
        self.published.append((message_id, body))
        return self.transport.publish(message_id, routing, body, headers)


def test_two_relays_pumping_at_once_publish_each_message_as_the_same_bytes_and_nothing_is_booked_twice(
        backend, pki, reactor_thread, in_process):  # noqa: F811
    """Both relays pump at once (their reads of the unsent messages overlap), to one bank."""
    store, other = backend.open(), backend.open()  # two processes' connections to one store
    try:
        world = World(store, pki, in_process, return_rate=0.1, payments=120)
        call(reactor_thread, world.connect)
        world.batcher.batch_all()
        messages = {m.message_id: m.body for m in store.unsent_messages(1000)}
        assert len(messages) >= 4
        recording = Recording(in_process)
        relays = [OutboxRelay(store, recording, clock=clock), OutboxRelay(other, recording, clock=clock)]

        def both():
            return defer.gatherResults([relay.pump() for relay in relays])

        call(reactor_thread, both)
        assert store.unsent_messages() == [] and other.unsent_messages() == []
        # at least once: every message published, maybe by both relays, always as its stored bytes
        published = collections.Counter(message_id for message_id, _ in recording.published)
        assert set(published) == set(messages)
        assert all(body == messages[message_id] for message_id, body in recording.published)
        eventually(reactor_thread, world.settled, "every payment line and voucher paid or returned", timeout=60)
        handled = world.intake.counts
        eventually(reactor_thread, lambda: handled.reports + handled.repeats + handled.dead
                   == world.bank.counts.published, "every report publication handled", timeout=60)
        # the bank saw each extra publication as a repeat, and booked every EndToEndId once
        print(f"two relays: {len(messages)} messages, {sum(published.values())} publications")
        assert world.bank.counts.repeated_messages == sum(published.values()) - len(messages)
        assert max(world.bank.booked.values()) == 1 and world.bank.counts.duplicate_payments == 0
        assert world.dead == []
        assert_reconciled(world)
    finally:
        other.close()
        store.close()
