"""Two outbox relays on one store, as two ``vgw serve --bank-exchange`` gateways (or a gateway and ``vgw bank
run``) run them: only the relay holding the store's relay turn publishes (adapters/storage/relay_turn.py), so every
transfer message goes out once however many relays pump at the same moment, and when the holder goes away
the other takes the turn at its next pump. On SQLite and on PostgreSQL."""

from __future__ import annotations

import collections
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from twisted.internet import defer

from adapters.bank.exchange import OutboxRelay
from adapters.storage.relay_turn import PostgresRelayTurn

from .test_bank_exchange import World, assert_reconciled, clock, in_process  # noqa: F401  (fixtures)
from .test_store_contract import _with_dbname, backend, pg_database  # noqa: F401
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
        # the server ends the holder's session (and frees its lock) a moment after the client hung up: polled
        eventually(reactor_thread, store.relay_turn, "the holder's turn freed on the server", timeout=30)
        assert call(reactor_thread, world.relay.pump) == len(store.bank_messages("out", limit=1000)) > 0
        assert store.unsent_messages() == []
        settle(world, reactor_thread)
        assert_reconciled(world)
    finally:
        holder.close()
        store.close()


def test_concurrent_first_pumps_of_one_store_make_one_turn_and_all_see_it_held(backend):  # noqa: F811
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so a check-then-set race shows
    try:
        for _ in range(15):
            store = backend.open()
            try:
                barrier = threading.Barrier(8)

                def first_pump(barrier=barrier, store=store):
                    barrier.wait(timeout=10)
                    return store.relay_turn()

                with ThreadPoolExecutor(8) as pool:
                    held = list(pool.map(lambda _: first_pump(), range(8)))
                assert held == [True] * 8  # one turn: a second one would have found the first's lock taken
                assert store.relay_turn()
            finally:
                store.close()  # releases the turn for the next round
    finally:
        sys.setswitchinterval(interval)


def test_the_turns_postgresql_session_has_keepalives_and_timeouts_on_both_ends(pg_database):  # noqa: F811
    """PostgreSQL only: the SQLite turn is a flock the kernel drops with the process, no network to time out."""
    url = _with_dbname(pg_database, urlsplit(pg_database).path.lstrip("/"), options="-c search_path=public")
    turn = PostgresRelayTurn(url)
    try:
        assert turn.held()
        conn = turn._conn
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in (
            "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "statement_timeout",
            "search_path")}
        assert shown == {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3",
                         "statement_timeout": "5s", "search_path": "public"}  # the URL's options are kept
        client = conn.info.get_parameters()
        assert (client["connect_timeout"], client["keepalives"], client["keepalives_idle"],
                client["tcp_user_timeout"]) == ("5", "1", "10", "30000")
    finally:
        turn.release()
