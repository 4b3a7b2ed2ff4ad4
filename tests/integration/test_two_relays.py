"""Two outbox relays on one store, as two ``vgw serve --bank-exchange`` gateways (or a gateway and ``vgw bank
run``) run them: only the relay holding the store's relay turn publishes (adapters/relay_turn.py), so every
transfer message goes out once however many relays pump at the same moment, and when the holder goes away
the other takes the turn at its next pump. On SQLite and on PostgreSQL."""

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


def settle(world: World, reactor) -> None:
    eventually(reactor, world.settled, "every payment line and voucher paid or returned", timeout=60)
    handled = world.intake.counts
    eventually(reactor, lambda: handled.reports + handled.repeats + handled.dead == world.bank.counts.published,
               "every report publication handled", timeout=60)


def test_two_relays_pumping_at_once_publish_each_message_once_and_the_bank_books_each_payment_once(
        backend, pki, reactor_thread, in_process):  # noqa: F811
    store, other = backend.open(), backend.open()  # two processes' connections to one store
    try:
        world = World(store, pki, in_process, return_rate=0.1, payments=120)
        call(reactor_thread, world.connect)
        world.batcher.batch_all()
        messages = {m.message_id: m.body for m in store.unsent_messages(1000)}
        assert len(messages) >= 4
        recording = Recording(in_process)
        relays = [OutboxRelay(store, recording, clock=clock), OutboxRelay(other, recording, clock=clock)]
        for _ in range(3):  # both pump at once, three times: their reads of the unsent messages overlap
            counts = call(reactor_thread, lambda: defer.gatherResults([relay.pump() for relay in relays]))
            assert 0 in counts  # one of them never publishes
        assert store.unsent_messages() == []
        published = collections.Counter(message_id for message_id, _ in recording.published)
        assert published == collections.Counter(set(messages))  # each once
        assert all(body == messages[message_id] for message_id, body in recording.published)
        settle(world, reactor_thread)
        assert world.bank.counts.repeated_messages == 0
        assert max(world.bank.booked.values()) == 1 and world.bank.counts.duplicate_payments == 0
        assert world.dead == []
        assert_reconciled(world)
    finally:
        other.close()
        store.close()


def test_the_turn_passes_to_the_other_relay_when_its_holder_goes_away(backend, pki, reactor_thread,
                                                                     in_process):  # noqa: F811
    store, holder = backend.open(), backend.open()
    try:
        world = World(store, pki, in_process, return_rate=0.0, payments=40)
        call(reactor_thread, world.connect)
        assert holder.relay_turn() and not store.relay_turn()  # another process holds it
        world.batcher.batch_all()
        assert call(reactor_thread, world.relay.pump) == 0 and store.unsent_messages() != []
        holder.close()  # the holder stops (a killed process's lock goes the same way: with its connection)
        assert call(reactor_thread, world.relay.pump) == len(store.bank_messages("out", limit=1000)) > 0
        assert store.unsent_messages() == []
        settle(world, reactor_thread)
        assert_reconciled(world)
    finally:
        holder.close()
        store.close()
