"""Regressions the rest of the suite let through: the outbox losing a write re-queued during its own flush, and
card numbers other than Visa left unmasked. The outbox runs here in front of a small in-memory store, so
these tests take milliseconds."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rag_middleware.config import OutboxSettings
from rag_middleware.errors import StoreError, StoreUnavailableError
from rag_middleware.learning.pii import PII_TYPES, PiiMasker, iban_valid, luhn_valid
from rag_middleware.memory.stores.outbox import OutboxStore
from rag_middleware.records import MemoryRecord


class InnerStore:
    """The remote store's protocol, in memory. ``down`` makes every call fail as an outage; ``refuse`` names
    ids whose writes are refused; ``on_upsert`` runs inside an upsert (to interleave another write)."""

    name = "inner"

    def __init__(self) -> None:
        self.records: dict[str, MemoryRecord] = {}
        self.down = False
        self.refuse: set[str] = set()
        self.on_upsert = None
        self.calls: list[tuple[str, list[str]]] = []
        self.closed = False

    @property
    def available(self) -> bool:
        return not self.down

    def _check_up(self) -> None:
        if self.down:
            raise StoreUnavailableError("inner store down")

    def check(self, records, vectors):
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(records) != len(vectors):
            raise StoreError("records and vectors differ in number")
        return vectors

    def upsert(self, records, vectors):
        self._check_up()
        self.calls.append(("upsert", [r.id for r in records]))
        refused = [r.id for r in records if r.id in self.refuse]
        if refused:
            raise StoreError(f"refused {refused}")
        if self.on_upsert is not None:
            hook, self.on_upsert = self.on_upsert, None
            hook(records)
        result = {"inserted": 0, "updated": 0, "unchanged": 0}
        for rec in records:
            old = self.records.get(rec.id)
            result["inserted" if old is None else "unchanged" if old == rec else "updated"] += 1
            self.records[rec.id] = rec
        return result

    @staticmethod
    def update_values(fields):
        bad = set(fields) - {"status", "answer", "meta"}
        if bad:
            raise StoreError(f"cannot update {sorted(bad)}")
        return dict(fields)

    def update(self, record_id, *, tenant=None, **fields):
        self._check_up()
        self.calls.append(("update", [record_id]))
        rec = self.records.get(record_id)
        if rec is None or (tenant is not None and rec.tenant != tenant):
            return False
        self.records[record_id] = rec.model_copy(update=fields)
        return True

    def delete(self, ids):
        self._check_up()
        self.calls.append(("delete", list(ids)))
        return sum(1 for i in ids if self.records.pop(i, None) is not None)

    def get(self, ids, *, tenant=None):
        self._check_up()
        return [self.records[i] for i in ids if i in self.records
                and (tenant is None or self.records[i].tenant == tenant)]

    def search(self, vector, *, filters, limit, text=None):
        self._check_up()
        return [("search", limit, text)]

    def count(self, filters=None):
        return len(self.records)

    def list(self, filters=None, *, limit=50, offset=0):
        return sorted(self.records.values(), key=lambda r: r.id)[offset : offset + limit]

    def ping(self) -> str:
        self._check_up()
        return "ok"

    def close(self) -> None:
        self.closed = True


def rec(rid: str, answer: str = "", tenant: str = "acme", **kw) -> MemoryRecord:
    return MemoryRecord(id=rid, tenant=tenant, domain="data_ops", question=f"question {rid}",
                        answer=answer or f"answer {rid}", **kw)


def vec(i: int = 0) -> np.ndarray:
    v = np.zeros((1, 4), dtype=np.float32)
    v[0, i % 4] = 1.0
    return v


@pytest.fixture
def inner() -> InnerStore:
    return InnerStore()


@pytest.fixture
def outbox(inner, tmp_path: Path):
    store = OutboxStore(inner, tmp_path / "outbox.sqlite", OutboxSettings(batch_size=2), background=False)
    yield store
    store.close()


def test_a_record_rewritten_during_its_own_flush_keeps_the_newer_version(outbox, inner):
    """The flush deletes what it sent by (id, seq): a newer write of the same id queued meanwhile stays."""
    inner.down = True
    outbox.upsert([rec("r1", "v1")], vec())
    assert outbox.depth() == 1
    inner.down = False
    writer_done = threading.Event()

    def write_v2_meanwhile(records):
        # another request writes r1 again while v1 is on its way: v2 is queued, then waits for the flush lock
        thread = threading.Thread(target=lambda: (outbox.upsert([rec("r1", "v2")], vec()), writer_done.set()),
                                  daemon=True)
        thread.start()
        for _ in range(500):
            if outbox.get(["r1"])[0].answer == "v2":  # v2 is in the outbox now
                break
            threading.Event().wait(0.01)
        else:  # pragma: no cover
            raise AssertionError("the concurrent write never reached the outbox")

    inner.on_upsert = write_v2_meanwhile
    outbox.flush()  # delivers v1; v2 must survive it
    assert writer_done.wait(10), "the concurrent writer never finished"
    outbox.flush()
    assert inner.records["r1"].answer == "v2"
    assert outbox.depth() == 0


def test_the_newest_queued_write_of_an_id_wins_and_counts_are_what_was_delivered(outbox, inner):
    inner.down = True
    assert outbox.upsert([rec("a", "1"), rec("b")], np.vstack([vec(0), vec(1)])) == {
        "inserted": 0, "updated": 0, "unchanged": 0, "queued": 2}
    outbox.upsert([rec("a", "2")], vec(0))
    assert outbox.depth() == 2
    assert outbox.status()["depth"] == 2 and outbox.status()["oldest"]
    inner.down = False
    result = outbox.flush()
    assert result == {"inserted": 2, "updated": 0, "unchanged": 0, "deleted": 0}
    assert inner.records["a"].answer == "2" and outbox.depth() == 0
    assert outbox.upsert([rec("a", "3")], vec(0)) == {"inserted": 0, "updated": 1, "unchanged": 0}
    assert outbox.upsert([], np.zeros((0, 4), np.float32)) == {"inserted": 0, "updated": 0, "unchanged": 0}


def test_batches_go_in_queue_order_and_a_refused_write_stays_with_its_error(outbox, inner):
    inner.down = True
    for i in range(5):
        outbox.upsert([rec(f"r{i}")], vec(i))
    inner.down = False
    inner.refuse = {"r2"}
    with pytest.raises(StoreError, match=r"1 queued write\(s\) refused .* first r2"):
        outbox.flush()
    assert sorted(inner.records) == ["r0", "r1", "r3", "r4"]
    upserts = [ids for op, ids in inner.calls if op == "upsert"]
    assert upserts[0] == ["r0", "r1"]  # batch_size 2, oldest first
    assert outbox.depth() == 1
    status = outbox.status()
    assert status["depth"] == 1 and "refused" in status["last_error"]
    inner.refuse = set()
    outbox.flush()
    assert "r2" in inner.records and outbox.depth() == 0 and outbox.status()["last_error"] == ""


def test_an_outage_during_a_flush_keeps_everything_queued(outbox, inner):
    inner.down = True
    outbox.upsert([rec("x")], vec())
    with pytest.raises(StoreUnavailableError):
        outbox.flush()
    assert outbox.depth() == 1
    assert outbox.get(["x"])[0].answer == "answer x"  # a queued upsert is readable during the outage
    assert outbox.get(["x"], tenant="globex") == []


def test_updates_and_deletes_queued_in_an_outage_apply_in_order(outbox, inner):
    outbox.upsert([rec("u"), rec("d")], np.vstack([vec(0), vec(1)]))
    assert outbox.depth() == 0 and set(inner.records) == {"u", "d"}
    inner.down = True
    assert outbox.update("u", status="approved") is True  # queued
    assert outbox.update("u", answer="edited") is True  # merged into the queued update
    assert outbox.delete(["d", "d"]) == 0  # known remotely only: nothing counted while queued
    assert outbox.depth() == 2
    inner.down = False
    result = outbox.flush()
    assert result["deleted"] == 1 and "d" not in inner.records
    assert inner.records["u"].status == "approved" and inner.records["u"].answer == "edited"
    with pytest.raises(StoreError):
        outbox.update("u", nonsense=1)


def test_an_update_or_delete_of_a_queued_upsert_acts_on_the_queue(outbox, inner):
    inner.down = True
    outbox.upsert([rec("q", tenant="acme")], vec())
    assert outbox.update("q", tenant="globex", status="approved") is False  # another tenant's record
    assert outbox.update("q", tenant="acme", status="approved") is True
    assert outbox.get(["q"])[0].status == "approved"
    assert outbox.delete(["q"]) == 1  # only ever queued: counted as deleted
    assert outbox.update("q", status="rejected") is False  # a queued delete: nothing to update
    with pytest.raises(StoreUnavailableError):  # a queued delete cannot be answered from the queue alone
        outbox.get(["q"])
    inner.down = False
    outbox.flush()
    assert "q" not in inner.records and outbox.depth() == 0


def test_reads_and_counts_go_to_the_remote_store(outbox, inner):
    outbox.upsert([rec("a"), rec("b")], np.vstack([vec(0), vec(1)]))
    assert outbox.count() == 2 and [r.id for r in outbox.list(limit=1, offset=1)] == ["b"]
    assert outbox.search(vec(0)[0], filters=None, limit=3, text="t") == [("search", 3, "t")]
    assert outbox.ping() == "ok" and outbox.name == "inner+outbox"
    assert outbox.get(["b", "a", "zz"]) == [inner.records["b"], inner.records["a"]]
    assert outbox.get(["a"], tenant="globex") == []


def test_a_queued_update_is_seen_by_get_and_a_delete_counts_what_it_removed(outbox, inner):
    outbox.upsert([rec("a"), rec("b"), rec("c")], np.vstack([vec(0), vec(1), vec(2)]))
    inner.down = True
    outbox.update("a", status="approved")
    inner.down = False
    assert outbox.depth() == 1  # queued: the flush runs on the next write
    inner.down = True
    with pytest.raises(StoreUnavailableError):
        outbox.get(["a"])  # an update alone cannot be answered from the queue
    inner.down = False
    inner.on_upsert = None
    original = inner.get
    inner.get = lambda ids, tenant=None: [r.model_copy(update={"status": "validated"})
                                          for r in original(ids, tenant=tenant)]
    assert outbox.get(["a"])[0].status == "approved"  # the queued update applied over the remote copy
    inner.get = original
    outbox.flush()
    assert inner.records["a"].status == "approved" and outbox.depth() == 0
    assert outbox.delete(["b", "c", "nope"]) == 2
    assert outbox.delete([]) == 0


def test_the_background_flusher_delivers_after_an_outage_and_logs_once(inner, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rag_middleware.memory.stores.outbox")
    settings = OutboxSettings(flush_interval=0.05, backoff_initial=0.01, backoff_max=0.05)
    store = OutboxStore(inner, tmp_path / "bg.sqlite", settings)
    try:
        inner.down = True
        store.upsert([rec("r1")], vec())
        store.upsert([rec("r2")], vec(1))
        time.sleep(0.3)  # several failed background flushes
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # once per outage
        assert warnings[0].getMessage().startswith(
            "memory store unreachable, 1 write(s) kept in the outbox until it is back: inner store down")
        assert store.status()["depth"] == 2
        inner.down = False
        deadline = time.monotonic() + 10
        while store.depth() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.depth() == 0 and set(inner.records) == {"r1", "r2"}
        assert any(r.getMessage() == "memory store reachable again; the outbox is drained" for r in caplog.records)
    finally:
        store.close()
    assert inner.closed


def test_close_delivers_what_is_left(inner, tmp_path):
    store = OutboxStore(inner, tmp_path / "close.sqlite", OutboxSettings(flush_interval=60), background=True)
    inner.down = True
    store.upsert([rec("late")], vec())
    inner.down = False
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < 5, "close waits for the flusher's interval"
    assert "late" in inner.records and inner.closed


def test_close_keeps_the_queue_when_the_store_is_down(inner, tmp_path):
    path = tmp_path / "keep.sqlite"
    store = OutboxStore(inner, path, OutboxSettings(), background=False)
    inner.down = True
    store.upsert([rec("kept")], vec())
    store.close()
    inner.down = False
    again = OutboxStore(inner, path, OutboxSettings(), background=False)
    try:
        assert again.depth() == 1
        again.flush()
        assert "kept" in inner.records
    finally:
        again.close()


# -- personal data -------------------------------------------------------------------------------------------

CARDS = {
    "visa": "4111 1111 1111 1111",
    "mastercard": "5555 5555 5555 4444",
    "mastercard_2": "5105-1051-0510-5100",
    "amex": "3782 822463 10005",
    "discover": "6011111111111117",
}


@pytest.mark.parametrize("brand", sorted(CARDS))
def test_card_numbers_of_every_brand_are_masked(brand):
    masker = PiiMasker()
    number = CARDS[brand]
    assert luhn_valid(number.replace(" ", "").replace("-", ""))
    assert masker.mask(f"paid with {number} yesterday") == "paid with <CARD> yesterday"
    assert masker.hits == {"card": 1}


@pytest.mark.parametrize("digits,valid", [
    ("5555555555554444", True), ("5555555555554445", False), ("4111111111111111", True),
    ("79927398713", True), ("79927398710", False), ("0", True), ("18", True), ("59", True), ("55", False),
])
def test_luhn_doubles_every_second_digit_from_the_right(digits, valid):
    assert luhn_valid(digits) is valid


def test_a_number_failing_luhn_is_not_called_a_card():
    masker = PiiMasker()
    out = masker.mask("order 5555 5555 5555 4445 shipped")
    assert "<CARD>" not in out and masker.hits["card"] == 0


def test_other_detectors_and_json_values():
    masker = PiiMasker()
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89 3704 0044 0532 0130 01")
    text = "mail ann@example.com, iban DE89 3704 0044 0532 0130 00, ip 10.0.0.1, ssn 123-45-6789, call +1 415 555 0100"
    masked = masker.mask(text)
    assert masked == "mail <EMAIL>, iban <IBAN>, ip <IP>, ssn <NATIONAL_ID>, call <PHONE>"
    assert set(masker.hits) == {"email", "iban", "ip", "national_id", "phone"}
    assert masker.mask("version 2024-01-15 and 3.14159") == "version 2024-01-15 and 3.14159"
    assert masker.mask_value({"a@b.co": ["x 4111111111111111", 3, None]}) == {"<EMAIL>": ["x <CARD>", 3, None]}
    assert set(PII_TYPES) == {"email", "iban", "card", "ip", "national_id", "phone"}


def test_checks_labels_and_counts():
    assert not iban_valid("hello") and not iban_valid("DE89")
    masker = PiiMasker()
    assert "<IP>" not in masker.mask("build 999.10.10.10")  # four numbers, but not an address
    assert masker.mask("passport no: X1234567, ID number: AB-123456") == \
        "passport no: <NATIONAL_ID>, ID number: <NATIONAL_ID>"  # the label stays, the number goes
    assert masker.mask("passport no: ABCDEFGH") == "passport no: ABCDEFGH"  # no digit: not an ID
    masker = PiiMasker()
    masker.mask("a@example.com and b@example.org")
    masker.mask("c@example.net")
    assert masker.hits == {"email": 3}


def test_a_digit_run_inside_a_hex_id_is_no_card():
    # an interaction id is a uuid4 hex; one held a Luhn-valid run of 16 digits and the export masked it as a card
    masker = PiiMasker()
    run = "4111111111111111"
    assert luhn_valid(run)
    text = f"id 4124f0c{run}b84 and card {run}."
    assert masker.mask(text) == "id 4124f0c4111111111111111b84 and card <CARD>."
    assert masker.hits == {"card": 1}
