"""The approval workflow's pure core: the transition table, decide_action's rules, and a hypothesis state
machine driving random actions (right and wrong people, deputies in and out of window, rejections,
corrections, releases against one budget) while checking the invariants after every step."""

from __future__ import annotations

import datetime
import hashlib
import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gateway.errors import Refusal
from gateway.treasury.budget import Allotment, BudgetKey, BudgetLedger
from gateway.trust.certificates import CertificateIdentity
from gateway.trust.registry import DutyException, Grant, GrantKind, RegistryError, RoleRegistry
from gateway.trust.roles import STAGE_ORDER, TREASURY_AGENCY, Role
from gateway.workflow.actions import Action, Decision, Reason, ReasonCode, VerifiedAction
from gateway.workflow.approvals import Flow, StageSignature, apply_event, decide_action
from gateway.workflow.transitions import AWAITING, FINAL, QUEUE_OF, TRANSITIONS, Actor, Event, Status, transition

T0 = datetime.datetime(2026, 11, 27, 1, 0, tzinfo=datetime.timezone.utc)
AGENCY = "379000001A"
YEAR, SUBJECT = 115, "5101010100"
KEY = BudgetKey(AGENCY, YEAR, SUBJECT)
FAR = T0 + datetime.timedelta(days=365)


def identity(n: int) -> CertificateIdentity:
    return CertificateIdentity(issuer="O=Test CA", serial_hex=format(1000 + n, "X"),
                               key_sha256=hashlib.sha256(f"key {n}".encode()).hexdigest(), subject=f"CN=person {n}",
                               common_name=f"person {n}", id_last_four=None)


# person -> (certificate number, [(agency, role, kind, valid_from, valid_to)])
PEOPLE = {
    "preparer": (1, [(AGENCY, Role.PREPARER, GrantKind.PRINCIPAL, T0, FAR)]),
    "reviewer": (2, [(AGENCY, Role.REVIEWER, GrantKind.PRINCIPAL, T0, FAR)]),
    "accountant": (3, [(AGENCY, Role.ACCOUNTANT, GrantKind.PRINCIPAL, T0, FAR)]),
    "head": (4, [(AGENCY, Role.HEAD, GrantKind.PRINCIPAL, T0, FAR)]),
    "releaser": (5, [(AGENCY, Role.RELEASER, GrantKind.PRINCIPAL, T0, FAR)]),
    # Holds two roles: may sign either, never both on one voucher.
    "dual": (6, [(AGENCY, Role.ACCOUNTANT, GrantKind.PRINCIPAL, T0, FAR), (AGENCY, Role.HEAD, GrantKind.PRINCIPAL, T0, FAR)]),
    # Prepares, and deputises for the reviewer for three days only.
    "deputy": (7, [(AGENCY, Role.PREPARER, GrantKind.PRINCIPAL, T0, FAR),
                   (AGENCY, Role.REVIEWER, GrantKind.DEPUTY, T0, T0 + datetime.timedelta(days=3))]),
    # A tiny school's head who also releases, under an explicit registry exception.
    "school-head": (8, [(AGENCY, Role.HEAD, GrantKind.PRINCIPAL, T0, FAR),
                        (AGENCY, Role.RELEASER, GrantKind.PRINCIPAL, T0, FAR)]),
    "treasury": (9, [(TREASURY_AGENCY, Role.TREASURY, GrantKind.PRINCIPAL, T0, FAR)]),
    "intruder": (10, []),
}
EXCEPTIONS = [DutyException(AGENCY, "school-head", frozenset({Role.HEAD, Role.RELEASER}), "one-person school", T0, FAR)]


def registry() -> RoleRegistry:
    grants = []
    for person, (number, roles) in PEOPLE.items():
        ident = identity(number)
        for agency, role, kind, start, end in roles:
            grants.append(Grant(agency, role, person, kind, start, end, cert_issuer=ident.issuer,
                                cert_serial_hex=ident.serial_hex, acting_for="reviewer" if kind is GrantKind.DEPUTY else None))
    return RoleRegistry(grants, EXCEPTIONS)


REGISTRY = registry()
_digests = itertools.count()


def digest() -> str:
    return hashlib.sha256(f"document {next(_digests)}".encode()).hexdigest()


def new_flow(number: int, revision: int = 1, preparer: str = "preparer") -> Flow:
    sha = digest()
    ident = identity(PEOPLE[preparer][0])
    signature = StageSignature(Actor.PREPARER, preparer, ident.key_sha256, f"cert:{ident.issuer}#{ident.serial_hex}",
                               sha, T0, "principal")
    return Flow(f"{AGENCY}-{YEAR}-{number:06d}", revision, AGENCY, sha, Status.RECEIVED, (signature,))


def act(flow: Flow, person: str, stage: Actor, *, decision: Decision = Decision.APPROVE,
        at: datetime.datetime = T0 + datetime.timedelta(hours=1), previous: str | None = None,
        voucher_sha256: str | None = None) -> tuple[VerifiedAction, object]:
    action = Action(flow.voucher_id, flow.revision, voucher_sha256 or flow.voucher_sha256,
                    previous if previous is not None else flow.chain_head, stage, decision, at,
                    Reason(ReasonCode.OTHER, "see note") if decision is not Decision.APPROVE else None)
    verified = VerifiedAction(action, identity(PEOPLE[person][0]), digest())
    return verified, decide_action(flow, verified, REGISTRY)


def refused(code: str, flow: Flow, person: str, stage: Actor, **kw) -> None:
    with pytest.raises(Refusal) as caught:
        act(flow, person, stage, **kw)
    assert caught.value.code == code, caught.value


def approved_through(flow: Flow, *people: str) -> Flow:
    for person, stage in zip(people, (Actor.REVIEWER, Actor.ACCOUNTANT, Actor.HEAD, Actor.RELEASER)):
        flow = act(flow, person, stage)[1].flow
    return flow


# --- the table ----------------------------------------------------------------------------------------------

def test_the_table_has_one_row_per_state_event_and_actor_and_final_states_have_none():
    keys = [(t.source, t.event, t.actor) for t in TRANSITIONS]
    assert len(keys) == len(set(keys))
    assert FINAL == {Status.RETURNED, Status.SUPERSEDED, Status.CANCELLED}
    for status in Status:
        if status not in FINAL:
            assert any(t.source is status for t in TRANSITIONS), status


def test_every_pair_not_in_the_table_is_refused_with_a_code():
    rows = {(t.source, t.event, t.actor) for t in TRANSITIONS}
    for status, event, actor in itertools.product(Status, Event, Actor):
        if (status, event, actor) in rows:
            assert transition(status, event, actor).source is status
        else:
            with pytest.raises(Refusal) as caught:
                transition(status, event, actor)
            assert caught.value.code in ("voucher-not-pending", "action-out-of-order")


def test_queues_are_the_awaited_states_and_the_preparers_is_the_rejected_one():
    assert QUEUE_OF[Actor.PREPARER] is Status.REJECTED
    assert {QUEUE_OF[Actor.of(role)] for role in STAGE_ORDER[1:]} == {
        Status.RECEIVED, Status.REVIEWED, Status.ACCOUNTANT_APPROVED, Status.HEAD_APPROVED}
    assert AWAITING[Status.HELD] is Actor.TREASURY


# --- decide_action's rules ------------------------------------------------------------------------------------

def test_five_people_release_a_voucher_in_order():
    flow = approved_through(new_flow(1), "reviewer", "accountant", "head", "releaser")
    assert flow.status is Status.RELEASED
    assert [s.actor for s in flow.signatures] == [Actor.of(r) for r in STAGE_ORDER]
    assert len({s.person for s in flow.signatures}) == 5


def test_a_stage_out_of_turn_is_refused():
    refused("action-out-of-order", new_flow(2), "accountant", Actor.ACCOUNTANT)


def test_the_wrong_role_is_not_authorised():
    refused("signer-not-authorised", new_flow(3), "head", Actor.REVIEWER)
    refused("signer-not-authorised", new_flow(3), "intruder", Actor.REVIEWER)


def test_one_person_may_not_sign_two_stages_even_holding_both_roles():
    flow = approved_through(new_flow(4), "reviewer", "dual")
    refused("separation-of-duties", flow, "dual", Actor.HEAD)


def test_a_deputy_may_not_review_what_they_prepared_and_only_within_their_window():
    refused("separation-of-duties", new_flow(5, preparer="deputy"), "deputy", Actor.REVIEWER)
    assert act(new_flow(6), "deputy", Actor.REVIEWER)[1].grant.kind is GrantKind.DEPUTY
    refused("signer-not-authorised", new_flow(7), "deputy", Actor.REVIEWER, at=T0 + datetime.timedelta(days=4))


def test_a_registry_exception_lets_one_named_person_combine_exactly_those_stages():
    flow = approved_through(new_flow(8), "reviewer", "accountant", "school-head")
    assert act(flow, "school-head", Actor.RELEASER)[1].flow.status is Status.RELEASED


def test_the_chain_and_the_voucher_bytes_are_bound():
    flow = new_flow(9)
    refused("action-chain-broken", flow, "reviewer", Actor.REVIEWER, previous=digest())
    refused("action-voucher-mismatch", flow, "reviewer", Actor.REVIEWER, voucher_sha256=digest())
    reviewed = act(flow, "reviewer", Actor.REVIEWER)[1].flow
    refused("action-chain-broken", reviewed, "accountant", Actor.ACCOUNTANT, previous=flow.voucher_sha256)


def test_a_rejection_at_any_stage_sends_the_voucher_back_and_ends_the_chain():
    flow = approved_through(new_flow(10), "reviewer", "accountant")
    rejected = act(flow, "head", Actor.HEAD, decision=Decision.REJECT)[1].flow
    assert rejected.status is Status.REJECTED
    refused("action-out-of-order", rejected, "releaser", Actor.RELEASER)
    assert apply_event(rejected, Event.SUPERSEDE, Actor.GATEWAY)[1].status is Status.SUPERSEDED


def test_registry_exceptions_must_say_why_and_name_two_roles():
    base = ('version = 1\n[[exception]]\nagency = "379000001A"\nperson = "x"\n'
            'valid_from = 2026-01-01T00:00:00Z\nvalid_to = 2027-01-01T00:00:00Z\n')
    with pytest.raises(RegistryError, match="reason"):
        RoleRegistry.from_toml(base + 'roles = ["head", "releaser"]\n')
    with pytest.raises(RegistryError, match="two roles"):
        RoleRegistry.from_toml(base + 'roles = ["head"]\nreason = "r"\n')
    loaded = RoleRegistry.from_toml(base + 'roles = ["head", "releaser"]\nreason = "school"\n')
    assert loaded.permits_combined("379000001A", "x", Role.HEAD, Role.RELEASER, T0)
    assert not loaded.permits_combined("379000001A", "x", Role.HEAD, Role.ACCOUNTANT, T0)


# --- the state machine ----------------------------------------------------------------------------------------

SIGNERS = st.sampled_from(sorted(PEOPLE))
STAGES = st.sampled_from([Actor.PREPARER, Actor.REVIEWER, Actor.ACCOUNTANT, Actor.HEAD, Actor.RELEASER, Actor.TREASURY])
HOLDERS = {role: sorted(p for p, (_, roles) in PEOPLE.items() if any(r is role for _, r, *_ in roles)) for role in Role}
RESERVING = {Status.TREASURY_ACCEPTED, Status.HELD, Status.BATCHED}


class ApprovalMachine(RuleBasedStateMachine):
    """Several vouchers of one agency, one small allotment, random people acting in random order."""

    @initialize(allotment=st.integers(min_value=1, max_value=50_000))
    def start(self, allotment):
        self.allotted = allotment
        self.ledger = BudgetLedger.from_allotments([Allotment(AGENCY, YEAR, SUBJECT, allotment)])
        self.flows: dict[str, Flow] = {}
        self.amounts: dict[str, int] = {}
        self.previous: dict[tuple[str, int], list[str]] = {}  # PreviousSha256 of each accepted action
        self.numbers = itertools.count(1)

    def _set(self, flow: Flow) -> None:
        self.flows[flow.voucher_id] = flow
        REACHED.add(flow.status)

    def _ref(self, flow: Flow) -> str:
        return f"{flow.voucher_id}#{flow.revision}"

    @precondition(lambda self: len(self.flows) < 4)  # a few vouchers, so each gets far enough to matter
    @rule(amount=st.integers(min_value=1, max_value=30_000))
    def submit(self, amount):
        flow = new_flow(next(self.numbers))
        self._set(flow)
        self.amounts[flow.voucher_id] = amount

    @precondition(lambda self: self.flows)
    @rule(data=st.data(), person=SIGNERS, stage=STAGES, aim=st.integers(0, 3), reject=st.integers(0, 5),
          hours=st.integers(min_value=0, max_value=24 * 6), chained=st.integers(0, 5))
    def sign(self, data, person, stage, aim, reject, hours, chained):
        """Mostly the awaited stage by someone holding its role (or the voucher would rarely get anywhere),
        otherwise anyone at any stage; sometimes a rejection, sometimes a broken chain."""
        flow = self.flows[data.draw(st.sampled_from(sorted(self.flows)))]
        awaited = AWAITING.get(flow.status)
        if aim and awaited is not None:
            stage = awaited
            person = data.draw(st.sampled_from(HOLDERS[Role(awaited.value)]))
        decision = Decision.CANCEL if stage is Actor.PREPARER else Decision.REJECT if reject == 0 else Decision.APPROVE
        previous = flow.chain_head if chained else digest()
        try:
            verified, step = act(flow, person, stage, decision=decision,
                                 at=T0 + datetime.timedelta(hours=hours), previous=previous)
        except Refusal as refusal:
            assert refusal.code and refusal.message  # every refusal has a code and says why
            return
        assert step.flow.signatures[:-1] == flow.signatures  # an action only appends
        if step.transition.budget.value == "free":
            self.ledger = self.ledger.release(self._ref(flow))
        self.previous.setdefault((flow.voucher_id, flow.revision), []).append(previous)
        self._set(step.flow)

    @precondition(lambda self: any(f.status is Status.RELEASED for f in self.flows.values()))
    @rule(data=st.data(), hold=st.booleans())
    def treasury_check(self, data, hold):
        flow = self.flows[data.draw(st.sampled_from(sorted(v for v, f in self.flows.items()
                                                            if f.status is Status.RELEASED)))]
        try:
            self.ledger = self.ledger.reserve(KEY, self._ref(flow), self.amounts[flow.voucher_id])
            event = Event.TREASURY_HOLD if hold else Event.TREASURY_ACCEPT
        except Refusal as refusal:
            assert refusal.code == "budget-exceeded"
            event = Event.TREASURY_REJECT
        self._set(apply_event(flow, event, Actor.TREASURY_CHECK)[1])

    @precondition(lambda self: any(f.status in (Status.TREASURY_ACCEPTED, Status.BATCHED, Status.PAID)
                                   for f in self.flows.values()))
    @rule(data=st.data(), returned=st.booleans())
    def bank(self, data, returned):
        flow = self.flows[data.draw(st.sampled_from(sorted(
            v for v, f in self.flows.items() if f.status in (Status.TREASURY_ACCEPTED, Status.BATCHED, Status.PAID))))]
        if flow.status is Status.TREASURY_ACCEPTED:
            row, after = apply_event(flow, Event.BATCH, Actor.GATEWAY)
        elif returned:
            row, after = apply_event(flow, Event.RETURN, Actor.BANK)
            self.ledger = self.ledger.release(self._ref(flow))
        elif flow.status is Status.BATCHED:
            row, after = apply_event(flow, Event.PAY, Actor.BANK)
            self.ledger = self.ledger.consume(self._ref(flow))
        else:
            return
        self._set(after)

    @precondition(lambda self: any(f.status is Status.REJECTED for f in self.flows.values()))
    @rule(data=st.data())
    def correct(self, data):
        flow = self.flows[data.draw(st.sampled_from(sorted(v for v, f in self.flows.items()
                                                            if f.status is Status.REJECTED)))]
        apply_event(flow, Event.SUPERSEDE, Actor.GATEWAY)
        correction = new_flow(int(flow.voucher_id.rsplit("-", 1)[1]), flow.revision + 1)
        self._set(correction)

    @invariant()
    def released_only_with_five_valid_ordered_signatures_by_five_people(self):
        for flow in getattr(self, "flows", {}).values():
            agency_stages = [s for s in flow.signatures if s.actor is not Actor.TREASURY]
            if flow.status is Status.CANCELLED:  # withdrawn before release by a preparer
                assert agency_stages[-1].actor is Actor.PREPARER and len(agency_stages) <= 6  # 5 approvals + it
                agency_stages = agency_stages[:-1]
            if flow.status in (Status.RECEIVED, Status.REVIEWED, Status.ACCOUNTANT_APPROVED, Status.HEAD_APPROVED):
                assert len(agency_stages) == STAGE_ORDER.index(Role(AWAITING[flow.status].value))
                continue
            if flow.status in (Status.REJECTED, Status.CANCELLED) and len(agency_stages) < 5:
                continue  # sent back inside the agency
            assert [s.actor for s in agency_stages[:5]] == [Actor.of(r) for r in STAGE_ORDER], flow
            for signature in flow.signatures:
                role = Role(signature.actor.value)
                agency = TREASURY_AGENCY if role is Role.TREASURY else AGENCY
                number = PEOPLE[signature.person][0]
                REGISTRY.authorise(identity(number), agency, role, signature.signed_at)  # raises if not valid
            approvals = flow.signatures if flow.status is not Status.CANCELLED else flow.signatures[:-1]
            for a, b in itertools.combinations(approvals, 2):
                if a.person == b.person:
                    assert REGISTRY.permits_combined(AGENCY, a.person, Role(a.actor.value), Role(b.actor.value),
                                                     b.signed_at), (a, b)
            chain = [s.document_sha256 for s in flow.signatures]
            assert self.previous[(flow.voucher_id, flow.revision)] == chain[:-1]

    @invariant()
    def budget_never_negative_and_money_conserved(self):
        if not hasattr(self, "ledger"):
            return
        balance = self.ledger.balance(KEY)
        assert balance.remaining >= 0
        assert balance.allotted == self.allotted == balance.remaining + balance.reserved + balance.consumed
        reserved = sum(self.amounts[v] for v, f in self.flows.items() if f.status in RESERVING)
        consumed = sum(self.amounts[v] for v, f in self.flows.items() if f.status is Status.PAID)
        assert (balance.reserved, balance.consumed) == (reserved, consumed)


REACHED: set[Status] = set()

ApprovalMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=80, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
test_approval_machine = ApprovalMachine.TestCase


def test_the_machine_reaches_every_state_it_is_meant_to_explore():
    """Guards the machine's steering: if it never released or paid anything, its invariants proved nothing."""
    REACHED.clear()
    run_state_machine_as_test(ApprovalMachine, settings=settings(
        max_examples=100, stateful_step_count=80, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow]))  # derandomized: the same runs every time, no flake
    assert {Status.RELEASED, Status.HELD, Status.TREASURY_ACCEPTED, Status.PAID, Status.RETURNED, Status.REJECTED,
            Status.RECEIVED, Status.CANCELLED} <= REACHED, REACHED


def test_only_a_preparer_withdraws_and_the_voucher_is_then_final():
    flow = approved_through(new_flow(60), "reviewer")
    cancelled = act(flow, "preparer", Actor.PREPARER, decision=Decision.CANCEL)[1].flow  # the voucher's own signer
    assert cancelled.status is Status.CANCELLED
    refused("voucher-not-pending", cancelled, "accountant", Actor.ACCOUNTANT)
    refused("signer-not-authorised", flow, "reviewer", Actor.PREPARER, decision=Decision.CANCEL)
    released = approved_through(new_flow(61), "reviewer", "accountant", "head", "releaser")
    refused("action-out-of-order", released, "preparer", Actor.PREPARER, decision=Decision.CANCEL)
    with pytest.raises(ValueError, match="only the preparer cancels"):
        Action(flow.voucher_id, 1, flow.voucher_sha256, flow.chain_head, Actor.REVIEWER, Decision.CANCEL, T0,
               Reason(ReasonCode.WITHDRAWN, "x"))
