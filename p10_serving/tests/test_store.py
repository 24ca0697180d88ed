"""The store on both engines, the same tests: SQLite in a folder, and a real PostgreSQL server started for the
session. Schema and migrations, feedback committed with exact counts and bounded examples, the prediction log and
its retention, events in order, model state and version verdicts that survive a reopen."""

import numpy as np
import pytest

from dlm_core.errors import DlmError
from p10_serving.store import SCHEMA_VERSION, DuplicateFeedback, Store, redact


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    if request.param == "sqlite":
        return tmp_path / "state"
    return request.getfixturevalue("postgres")()


def test_schema_is_created_once_and_a_newer_one_is_refused(where):
    s = Store(where)
    assert s.schema_version() == SCHEMA_VERSION
    s.close()
    s = Store(where)  # reopening migrates nothing
    assert s.schema_version() == SCHEMA_VERSION
    with s.tx() as cur:
        cur.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    s.close()
    with pytest.raises(DlmError, match="newer than this server"):
        Store(where)


def test_feedback_counts_accuracy_retention_and_the_rows_since_an_onset(where):
    s = Store(where, feedback_rows=5)
    img = np.arange(4, dtype=np.float32).reshape(2, 2)
    assert s.add_feedback("m", "1", [(img, 3, True, None), (img + 1, 4, False, None)]) == 2
    assert s.add_feedback("m", "2", [(img + i, i, i % 2 == 0, None) for i in range(6)]) == 8
    assert s.add_feedback("txt", "1", [("a text", 1, True, None)]) == 1
    assert s.feedback_count("m") == 8 and s.feedback_count("m", "2") == 6 and s.feedback_count("m", "1") == 2
    assert s.accuracy("m", "2", 4) == (0.5, 4) and s.accuracy("m", "1", 3) == (None, 2)
    # the newest 5 examples are kept, the counts stay exact
    rows = s.feedback_since("m", 0, 100)
    assert len(rows) == 5 and [y for _, y in rows] == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(rows[-1][0], img + 5)
    assert [y for _, y in s.feedback_since("m", 6, 100)] == [4, 5]
    assert [y for _, y in s.feedback_since("m", 4, 100, upto=7)] == [2, 3, 4]
    assert [y for _, y in s.feedback_since("m", 0, 2)] == [4, 5]
    assert s.feedback_since("txt", 0, 10) == [("a text", 1)]


def test_a_prediction_gets_one_label_and_a_duplicate_writes_nothing(where):
    s = Store(where, prediction_rows=3)
    s.log_predictions([(f"p{i}", 1.0 + i, "m", "1", 2.5, {"label": "a"}, i % 3, np.zeros(2, np.float32))
                       for i in range(5)] + [("q0", 9.0, "other", "1", 1.0, {"score": 0.5}, None, None)])
    got = s.predictions(["p0", "p3", "p4", "q0", "nope"])
    assert sorted(got) == ["p3", "p4", "q0"]  # the newest 3 per model kept
    assert got["p4"]["signal"] == 1 and got["p4"]["output"] == {"label": "a"} and got["q0"]["example"] is None
    s.add_feedback("m", "1", [(got["p3"]["example"], 0, True, "p3")])
    with pytest.raises(DuplicateFeedback, match="p3"):
        s.add_feedback("m", "1", [(None, 1, True, "p4"), (None, 1, True, "p3")])
    with pytest.raises(DuplicateFeedback, match="p4"):
        s.add_feedback("m", "1", [(None, 1, True, "p4"), (None, 1, True, "p4")])
    assert s.feedback_count("m") == 1


def test_events_state_and_verdicts_survive_a_reopen(where):
    s = Store(where)
    for i, kind in enumerate(["drift_alert", "episode", "swap"]):
        s.add_event({"time": 100.0 + i, "kind": kind, "model": "m", "detail": {"n": i}})
    s.save_state("m", {"serving": {"version": "2"}, "cooldown_until": 123.5})
    s.save_state("m", {"serving": {"version": "3"}, "cooldown_until": 124.5})
    s.mark_version("m", "2", "rejected")
    s.mark_version("m", "3", "served")
    s.mark_version("m", "2", "rolled_back")
    s.close()
    s = Store(where)
    events = s.events()
    assert [e["kind"] for e in events] == ["drift_alert", "episode", "swap"] and events[2]["detail"] == {"n": 2}
    assert [e["kind"] for e in s.events(since=100.5)] == ["episode", "swap"]
    assert s.load_state("m") == {"serving": {"version": "3"}, "cooldown_until": 124.5}
    assert s.load_state("other") is None
    assert s.version_marks() == {("m", "2"): "rolled_back", ("m", "3"): "served"}


def test_replicas_writing_a_new_models_first_state_at_once_all_succeed(where):
    """Two replicas starting on an empty store both save the first state row of each model (seen under compose:
    a delete-then-insert failed one of them on the primary key); every write succeeds and one row remains."""
    import threading

    stores = [Store(where) for _ in range(4)]
    errors = []

    def write(s, i):
        try:
            for m in range(20):
                s.save_state(f"m{m}", {"writer": i})
                s.mark_version(f"m{m}", "1", f"by-{i}")
        except Exception as err:  # noqa: BLE001 - any failure is the finding
            errors.append(repr(err))

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(stores[0].load_state(f"m{m}")["writer"] in range(4) for m in range(20))
    assert len(stores[0].version_marks("m3")) == 1
    for s in stores:
        s.close()


def test_a_bad_location_is_one_clear_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DlmError, match="cannot create the state dir"):
        Store(tmp_path / "file" / "state")
    with pytest.raises(DlmError, match=r"cannot connect to the store postgresql://u:\*\*\*@127.0.0.1:1/db"):
        Store("postgresql://u:secret@127.0.0.1:1/db")
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"


def test_one_lease_holder_at_a_time_until_it_expires_or_is_released(where):
    a, b = Store(where), Store(where)  # two replicas, two connections
    assert a.lease("lifecycle", "r1", 0.5) and not b.lease("lifecycle", "r2", 0.5)
    assert a.lease("lifecycle", "r1", 0.5) and a.lease_holder("lifecycle") == "r1"  # renewed
    import time

    time.sleep(0.6)  # r1 stopped renewing: r2 takes over, and r1 cannot take it back
    assert b.lease("lifecycle", "r2", 5) and not a.lease("lifecycle", "r1", 5)
    b.release("lifecycle", "r2")
    assert b.lease_holder("lifecycle") is None and a.lease("lifecycle", "r1", 5)
    a.close(), b.close()


def test_a_postgresql_store_reconnects_after_its_connection_is_lost(postgres):
    s = Store(postgres())
    s.add_event({"time": 1.0, "kind": "a", "model": "m"})
    with Store(s.where).tx() as cur:  # the server ends the store's session (as a PostgreSQL restart would)
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND datname = current_database()")
    import psycopg

    with pytest.raises(psycopg.OperationalError):  # the call that finds the connection dead fails ...
        s.add_event({"time": 2.0, "kind": "b", "model": "m"})
    s.add_event({"time": 3.0, "kind": "c", "model": "m"})  # ... and the next one reconnects
    assert [e["kind"] for e in s.events()] == ["a", "c"]
