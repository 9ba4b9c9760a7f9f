"""The results store: embedded multi-process safety, MongoDB errors, data store."""

from __future__ import annotations

import multiprocessing
import socket
from pathlib import Path

import pytest
from hpc_workers import run_worker, tiny_task

from perovflow.errors import StoreError
from perovflow.hpc.embedded import SyncedClient
from perovflow.hpc.store import get_job_store, redact
from perovflow.settings import get_settings


def test_four_workers_record_every_job_exactly_once() -> None:
    """4 processes x 10 jobs at once: 40 task documents, 40 blobs, counter at 40."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=run_worker, args=(w, 10)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = get_job_store()
    store.connect()
    docs = list(store.query({}, properties=["uuid", "output.labels.n"]))
    ns = sorted(d["output"]["labels"]["n"] for d in docs)
    assert ns == sorted(w * 1000 + i for w in range(4) for i in range(10))
    assert len({d["uuid"] for d in docs}) == 40
    assert store.additional_stores["data"].count() == 40
    folder = get_settings().resolved(get_settings().project_dir) / "store"
    counter = SyncedClient(folder)["perovflow"]["counters"].find_one({"_id": "c"})
    assert counter["n"] == 40
    one = store.query_one({"output.labels.n": 3003}, load=True)
    assert one["output"]["eigenvalues"][0][:3] == [0.0, 1.0, 2.0]


def _bump(folder: str, n: int) -> None:
    coll = SyncedClient(folder)["db"]["c"]
    for _ in range(n):
        coll.find_one_and_update({"_id": "x"}, {"$inc": {"n": 1}}, upsert=True)


def test_read_modify_write_is_atomic_across_processes(tmp_path: Path) -> None:
    """find_one_and_update from 4 processes never loses an increment."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(str(tmp_path), 50)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert SyncedClient(tmp_path)["db"]["c"].find_one({"_id": "x"})["n"] == 200


def test_second_process_sees_updates_deletes_and_indexes(tmp_path: Path) -> None:
    a, b = SyncedClient(tmp_path)["db"]["c"], SyncedClient(tmp_path)["db"]["c"]
    a.insert_many([{"_id": i, "formula": "CsPbBr3" if i % 2 else "PbBr2"} for i in range(6)])
    a.create_index("formula")
    assert b.count_documents({"formula": "CsPbBr3"}) == 3
    b.update_many({"formula": "PbBr2"}, {"$set": {"formula": "Cs4PbBr6"}})
    b.delete_one({"_id": 5})
    assert sorted(a.distinct("formula")) == ["Cs4PbBr6", "CsPbBr3"]
    assert a.count_documents({}) == 5
    assert "formula_1" in b.index_information()


def test_unusable_embedded_folder_is_one_line_store_error(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PEROVFLOW_PROJECT_DIR", str(blocker))
    with pytest.raises(StoreError) as err:
        get_job_store()
    assert "fix:" in str(err.value) and "\n" not in str(err.value)


def test_dead_mongodb_is_store_error_without_password(monkeypatch) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr("perovflow.hpc.store.SERVER_TIMEOUT_MS", 300)
    monkeypatch.setenv("PEROVFLOW_STORE__URI", f"mongodb://alice:s3cret@127.0.0.1:{port}/x")
    with pytest.raises(StoreError) as err:
        get_job_store()
    assert "s3cret" not in str(err.value) and "***" in str(err.value)


def test_redact_hides_passwords_only() -> None:
    assert redact("mongodb+srv://u:p@h/db") == "mongodb+srv://u:***@h/db"
    assert redact("mongodb://h:27017/db") == "mongodb://h:27017/db"


def test_job_outputs_roundtrip_through_data_store() -> None:
    from jobflow import run_locally

    store = get_job_store()
    job = tiny_task(7, study="rt")
    run_locally(job, store=store, log=False, ensure_success=True)
    doc = store.query_one({"uuid": job.uuid})
    assert "blob_uuid" in doc["output"]["eigenvalues"]  # not inline: moved to the data store
    assert store.get_output(job.uuid, load=True)["eigenvalues"][0][199] == 199.0


def test_cursor_reads_a_snapshot_taken_under_the_lock(tmp_path: Path) -> None:
    """A find() cursor holds copies made when it was first read, not live documents."""
    coll = SyncedClient(tmp_path)["db"]["c"]
    coll.insert_many([{"_id": i, "v": 0} for i in range(3)])
    cursor = coll.find({}).sort("_id", 1)
    first = next(cursor)
    coll.update_many({}, {"$set": {"v": 1}})  # a write after the cursor was read
    coll.delete_one({"_id": 2})
    assert [first["v"], *(d["v"] for d in cursor)] == [0, 0, 0]  # the snapshot: 3 docs, v=0
    assert [d["v"] for d in coll.find({})] == [1, 1]  # a new read sees the writes


def test_transaction_commits_all_or_nothing(tmp_path: Path) -> None:
    from perovflow.hpc.embedded import transaction

    a, b = SyncedClient(tmp_path)["db"]["c"], SyncedClient(tmp_path)["db"]["c"]
    with pytest.raises(RuntimeError), transaction(a):
        a.insert_one({"_id": 1})
        a.insert_one({"_id": 2})
        raise RuntimeError("crash in the middle")
    assert b.count_documents({}) == 0 and a.count_documents({}) == 0  # nothing committed
    with transaction(a):
        a.insert_one({"_id": 1})
        a.insert_one({"_id": 2})
    assert b.count_documents({}) == 2


def test_remove_docs_deletes_exactly_the_matching_documents() -> None:
    store = get_job_store()
    store.connect()
    docs = store.docs_store
    docs.update([{"uuid": f"u{i}", "n": i} for i in range(5)], key="uuid")
    docs.remove_docs({"n": {"$gte": 3}})
    assert sorted(d["n"] for d in docs.query({}, properties=["n"])) == [0, 1, 2]


def test_threads_reading_while_another_writes_see_whole_snapshots(tmp_path: Path) -> None:
    """One thread inserts 100 documents one by one (as FireWorks' ping thread writes while
    the main thread reads); two threads read cursors meanwhile. Every read must succeed and
    see a prefix 0..k-1 of the inserts (never a document twice, never a gap)."""
    import threading

    coll = SyncedClient(tmp_path)["db"]["c"]
    errors: list[BaseException] = []
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                ids = sorted(d["_id"] for d in coll.find({}, {"_id": 1}))
                assert ids == list(range(len(ids))), ids
                seen.append(len(ids))
        except BaseException as exc:  # reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(100):
        coll.insert_one({"_id": i, "pad": "x" * 200})
    stop.set()
    for t in readers:
        t.join(30)
    assert errors == [] and seen and max(seen) <= 100
    assert coll.count_documents({}) == 100
