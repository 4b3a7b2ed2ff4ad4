"""/readyz when the store does not answer: 503 not-ready with Retry-After (an outage), never a 500 (a bug)."""

import json
from types import SimpleNamespace

from adapters.services.intake import IntakeService
from adapters.storage.factory import open_store


def _readiness(store):
    return IntakeService.readiness(SimpleNamespace(amqp_intake=None, store=store))


def test_a_store_that_answers_is_ready(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'ready.sqlite3'}")
    try:
        answer = _readiness(store)
    finally:
        store.close()
    assert answer.status == 200 and json.loads(answer.body) == {"status": "ready"}


def test_a_store_that_fails_its_round_trip_is_not_ready(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'gone.sqlite3'}")
    store.close()  # every later read raises StoreError, as a store that went away does
    answer = _readiness(store)
    assert answer.status == 503 and answer.outcome == "not-ready"
    assert answer.headers == {"Retry-After": "5"}
    assert json.loads(answer.body)["code"] == "not-ready"
