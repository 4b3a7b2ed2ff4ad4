"""``vgw sim serve``: the gateway on the embedded default with the simulated bank on the other end of its
in-process bank transport — one process, no broker — for testers and ``vgw demo``.

It is ``vgw serve --bank-exchange`` in every other respect (same options, same settings, same HTTPS API):
the bank exchange batches treasury-accepted payments into signed pain.001, relays them over the in-process
transport, and the simulated 代庫銀行 (:mod:`simulators.bank`, with all of ``vgw sim bank``'s ledger and fault
options) answers with signed pain.002 / camt.054 reports that the gateway applies per payment line. The bank
side still verifies the gateway's signature and schema and the gateway still pins the bank's certificate, so
the messages are the ones a real bank link would carry; only the wire is a deque.

With ``--bank-amqp`` the exchange goes over RabbitMQ instead and this command refuses: run ``vgw serve
--bank-exchange --bank-amqp URL`` and ``vgw sim bank --amqp URL`` as two processes, as in production.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from adapters.command_line import CliError


def _run(args: argparse.Namespace) -> int:
    from adapters.serve.command import bank_exchange_problem, run_gateway, settings_from_args
    from simulators.bank import bank_from_args

    if args.bank_amqp:
        raise CliError("vgw sim serve runs the bank on the in-process transport; with a broker run "
                       "`vgw serve --bank-exchange --bank-amqp URL` and `vgw sim bank --amqp URL`")
    if not args.pki:
        raise CliError("vgw sim serve needs --pki (the simulated bank's key is in it)")
    s = settings_from_args(args, bank__exchange=True, workers=1)
    if problem := bank_exchange_problem(s, embedded=True):
        raise CliError(f"cannot start: {problem}")
    bank = bank_from_args(args, Path(args.pki), lambda: datetime.datetime.now(datetime.timezone.utc))

    def attach(transport) -> None:
        bank.attach(transport, transport.topology.transfers_queue, reactor=transport.reactor)
        transport.reactor.addSystemEventTrigger("before", "shutdown", cancel_pending)

    def cancel_pending() -> None:
        if bank.link is not None:
            bank.link.cancel_pending()  # delayed reports and settlements of a stopping bank are never sent

    status = run_gateway(s, bank_peer=attach)
    # the same tally `vgw sim bank` prints when it stops, for the demo and testers to read
    print(json.dumps({"bank": vars(bank.counts), "booked": sum(bank.booked.values()),
                      "booked_twice": sum(1 for n in bank.booked.values() if n > 1)}), flush=True)
    return status


def register(registry) -> None:
    from adapters.serve.command import add_serve_arguments

    p = registry.command("sim", "serve", handler=_run,
                         help="the gateway on the embedded default with the simulated bank in the same process "
                              "(`vgw serve --bank-exchange` on the in-process bank transport)")
    add_serve_arguments(p)
    add_bank_arguments(p)


def add_bank_arguments(parser: argparse.ArgumentParser) -> None:
    from simulators.bank import add_bank_arguments as bank_arguments

    bank_arguments(parser)
