"""`vgw serve --workers 2 --amqp`: one worker publishes queue events, so each is published once.

A module of its own: a `vgw serve` still consuming the shared broker's intake queue (another module's
gateway) would take some of these vouchers.
"""

from __future__ import annotations

from simulators.pki.layout import init_pki

from ..conftest import AGENCY_A, NOW
from .test_amqp_actions_and_events import TOPOLOGY, AgencySystem, AmqpGateway, amqp_url, signed_voucher


def test_with_several_workers_one_publisher_publishes_each_event_once(tmp_path_factory, factory):
    base = tmp_path_factory.mktemp("amqp-events-workers")
    init_pki(base / "pki", agencies=1, now=NOW)
    url = amqp_url()
    system = AgencySystem(url, bindings=(f"queue.{AGENCY_A}.reviewer",))
    gateway = AmqpGateway(base, url, workers=2)
    try:
        assert len(gateway.log_events("events.connect")) == 1, "exactly one worker publishes events"
        about = set()
        for _ in range(6):  # over AMQP: the broker spreads them over both workers' consumers
            voucher, data = signed_voucher(gateway.pki_dir, factory)
            assert system.ask(data, TOPOLOGY.routing_key)[0].headers["status"] == 202
            about.add(voucher.voucher_id)
        events = system.next_events(len(about), about=about)
        assert sorted(event["voucher_id"] for _, event in events) == sorted(about)
        ids = [event["event_id"] for _, event in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    finally:
        system.close()
        gateway.stop()
