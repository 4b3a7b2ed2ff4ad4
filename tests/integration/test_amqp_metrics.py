"""The AMQP intake's gauges against a real broker: whether it consumes, and how many messages really wait."""

from __future__ import annotations

import time

import pika
import pytest
from prometheus_client import CollectorRegistry

from adapters.amqp.intake import AmqpIntake, declare_topology
from adapters.serve.bootstrap import PlatformConfig, build_platform
from adapters.services.intake import IntakeService
from adapters.storage.factory import open_store
from gateway.vouchers.bank_directory import BankDirectory
from simulators.pki.layout import init_pki, load_cert, load_key

from ..conftest import AGENCY_A, NOW
from .test_amqp_intake import amqp_parameters, topology  # noqa: F401  (fixtures: the broker, own names)

WAITING = 10


@pytest.fixture
def service(tmp_path):
    init_pki(tmp_path / "pki", agencies=1, now=NOW)
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield IntakeService(platform=build_platform(PlatformConfig.from_pki_dir(tmp_path / "pki")),
                        banks=BankDirectory.shipped(), store=store,
                        gateway_key=load_key(tmp_path / "pki/gateway/key.pem"),
                        gateway_cert=load_cert(tmp_path / "pki/gateway/cert.pem"))
    store.close()


def test_the_gauges_show_the_connection_and_the_queue_depth_the_broker_reports(service, amqp_parameters,
                                                                                 topology):
    connection = pika.BlockingConnection(amqp_parameters)
    channel = connection.channel()
    declare_topology(channel, topology)
    channel.confirm_delivery()
    reply_queue = channel.queue_declare("", exclusive=True).method.queue
    for i in range(WAITING):  # waiting before the consumer starts; answered as what they are (422, junk)
        channel.basic_publish(topology.exchange, topology.routing_key, b"not a voucher", pika.BasicProperties(
            user_id="guest", reply_to=reply_queue, correlation_id=f"m{i}"), mandatory=True)
    registry = CollectorRegistry()
    intake = AmqpIntake(service, amqp_parameters, agencies={"guest": AGENCY_A}, topology=topology,
                        registry=registry, probe_interval=0.2)

    def gauge(name: str) -> float | None:
        return registry.get_sample_value(name, {"queue": topology.queue})

    assert (gauge("vgw_amqp_connected"), gauge("vgw_amqp_queue_messages")) == (0.0, None)
    intake.start()
    try:
        # The first probe runs before consuming starts: everything that waited is counted.
        assert (gauge("vgw_amqp_connected"), gauge("vgw_amqp_queue_messages")) == (1.0, WAITING)
        answered, deadline = 0, time.monotonic() + 20
        while answered < WAITING and time.monotonic() < deadline:
            method, _, _ = channel.basic_get(reply_queue, auto_ack=True)
            answered += method is not None
            if method is None:
                connection.sleep(0.02)
        assert answered == WAITING
        deadline = time.monotonic() + 10
        while gauge("vgw_amqp_queue_messages") != 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # the consumer's next probe, every 0.2 s here
        assert gauge("vgw_amqp_queue_messages") == 0
    finally:
        intake.stop()
        connection.close()
    assert (gauge("vgw_amqp_connected"), gauge("vgw_amqp_queue_messages")) == (0.0, None)
