"""The server's durable state, one SQL schema on two engines: SQLite (WAL) in `--state-dir` by default, PostgreSQL
when given `--store-url postgresql://...` (psycopg 3; what replicas share). Everything the server learns after it
starts lives here, so a restart, a crash or a redeploy loses nothing that was acknowledged:

    feedback      every labelled row (model, version served, label, right or wrong, the training example, and the
                  prediction it labels); a 2xx on feedback means its rows are committed. Rows are never deleted:
                  the counts that episodes refer to stay exact; examples older than the newest `feedback_rows`
                  per model are dropped (set to NULL), which bounds the size.
    predictions   a sampled log of answers (prediction id, time, model, version, latency, output, the example a
                  retrain would learn from), the newest `prediction_rows` per model kept; feedback may name a
                  prediction id instead of sending the input again.
    events        the lifecycle's history (drift alerts, episodes, retrains, gates, swaps, rollbacks), in order.
    model_state   per model, one JSON document: the serving and previous version (with bundle path and sha256),
                  the criteria's state, the running retrain, the cooldown (wall-clock deadline).
    versions      per model and version, a verdict that outlives folders: `rejected` (by the gate) and
                  `rolled_back` versions are never served again on their own, whatever `--all` finds newest.
    leases        who holds the `lifecycle` lease: with replicas on one store, that one judges the criteria,
                  runs retrains and swaps; the others follow model_state.

The schema is versioned (`schema_version`) and migrated forward on start, under a lock (SQLite's write lock,
PostgreSQL's advisory lock), so replicas starting together migrate once. Calls are blocking: the async server
runs them in a worker thread (asyncio.to_thread); one connection per store, serialised by a lock.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from dlm_core.errors import DlmError

SCHEMA_VERSION = 2
# (version, statements); {id} {blob} {real} are filled per engine
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        "CREATE TABLE events (id {id}, time {real} NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL, "
        "body TEXT NOT NULL)",
        "CREATE TABLE feedback (id {id}, time {real} NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, "
        "label INTEGER NOT NULL, correct INTEGER NOT NULL, example {blob}, prediction_id TEXT)",
        "CREATE INDEX feedback_by_version ON feedback (model, version, id)",
        "CREATE INDEX feedback_by_model ON feedback (model, id)",
        "CREATE UNIQUE INDEX feedback_once ON feedback (prediction_id)",
        "CREATE TABLE predictions (id {id}, pid TEXT NOT NULL UNIQUE, time {real} NOT NULL, model TEXT NOT NULL, "
        "version TEXT NOT NULL, latency_ms {real}, output TEXT NOT NULL, signal INTEGER, example {blob})",
        "CREATE INDEX predictions_by_model ON predictions (model, id)",
        "CREATE TABLE model_state (model TEXT PRIMARY KEY, body TEXT NOT NULL, updated {real} NOT NULL)",
        "CREATE TABLE versions (model TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL, "
        "time {real} NOT NULL, PRIMARY KEY (model, version))",
    ]),
    (2, [  # replicas: who judges the retraining criteria (one lease holder at a time)
        "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until {real} NOT NULL)",
    ]),
]
ENGINES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "real": "REAL"},
    "postgresql": {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "blob": "BYTEA",
                   "real": "DOUBLE PRECISION"},
}
ADVISORY_LOCK = 0x646C6D  # "dlm": PostgreSQL's migration lock
MEMORY = ":memory:"  # a store that dies with the process (no --state-dir): tests, throwaway servers


def encode_example(x) -> bytes:
    """A training example as bytes: a text as UTF-8 (prefix t), an array as .npy (prefix n)."""
    if isinstance(x, str):
        return b"t" + x.encode()
    buf = io.BytesIO()
    np.save(buf, np.asarray(x), allow_pickle=False)
    return b"n" + buf.getvalue()


def decode_example(b: bytes | memoryview | None):
    if b is None:
        return None
    b = bytes(b)
    return b[1:].decode() if b[:1] == b"t" else np.load(io.BytesIO(b[1:]), allow_pickle=False)


class Store:
    """The durable state behind one server (SQLite) or several replicas (PostgreSQL)."""

    def __init__(self, where: str | os.PathLike, feedback_rows: int = 10_000, prediction_rows: int = 20_000):
        self.where, self.lock = str(where), threading.Lock()
        self.feedback_rows, self.prediction_rows = feedback_rows, prediction_rows
        if self.where.startswith(("postgresql://", "postgres://")):
            self.engine = "postgresql"
            self.db = self.connect()
        else:
            self.engine = "sqlite"
            if self.where == MEMORY:
                self.path = MEMORY
            else:
                folder = Path(self.where)
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    raise DlmError(f"cannot create the state dir {folder}: {err.strerror}") from None
                self.path = folder / "state.sqlite"
            # explicit transactions (isolation_level=None); the WAL lets readers go on while one writer commits
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a 2xx means the rows survive a power cut, not just a kill
        self.migrate()

    # ------------------------------------------------------------------------------------------ plumbing
    def connect(self):
        """A PostgreSQL connection (DlmError, one line, when the server cannot be reached)."""
        try:
            import psycopg
        except ImportError:  # pragma: no cover - psycopg is a dependency of p10_serving
            raise DlmError("a PostgreSQL store needs psycopg (pip install 'psycopg[binary]')") from None
        try:
            return psycopg.connect(self.where, connect_timeout=10)
        except psycopg.Error as err:
            raise DlmError(f"cannot connect to the store {redact(self.where)}: {err}".strip()) from None

    def sql(self, q: str) -> str:
        return q.replace("?", "%s") if self.engine == "postgresql" else q

    @contextlib.contextmanager
    def tx(self):
        """One transaction (committed on exit, rolled back on an exception); a cursor with `?` placeholders."""
        with self.lock:
            if self.engine == "sqlite":
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield Cursor(self, self.db.cursor())
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
            else:
                if self.db.closed or self.db.broken:  # the server restarted or the network dropped: reconnect
                    self.db = self.connect()
                with self.db.transaction(), self.db.cursor() as cur:
                    yield Cursor(self, cur)

    def migrate(self) -> None:
        with self.tx() as cur:
            if self.engine == "postgresql":
                cur.execute("SELECT pg_advisory_xact_lock(?)", (ADVISORY_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = cur.one("SELECT MAX(version) FROM schema_version")
            have = row[0] or 0
            if have > SCHEMA_VERSION:
                raise DlmError(f"the store {redact(self.where)} has schema version {have}, newer than this "
                               f"server's {SCHEMA_VERSION}; upgrade the server")
            for version, statements in MIGRATIONS:
                if version > have:
                    for s in statements:
                        cur.execute(s.format(**ENGINES[self.engine]))
                    cur.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    @property
    def durable(self) -> bool:
        return self.where != MEMORY

    def schema_version(self) -> int:
        with self.tx() as cur:
            return cur.one("SELECT MAX(version) FROM schema_version")[0]

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # ------------------------------------------------------------------------------------------ feedback
    def add_feedback(self, model: str, version: str, rows: list[tuple]) -> int:
        """rows of (example, label, correct, prediction_id or None), committed together; the model's count after.
        A prediction id that was already labelled raises DuplicateFeedback (nothing of the call is written)."""
        now = time.time()
        with self.tx() as cur:
            if any(r[3] is not None for r in rows):
                pids = [r[3] for r in rows if r[3] is not None]
                marks = ",".join("?" * len(pids))
                seen = cur.all(f"SELECT prediction_id FROM feedback WHERE prediction_id IN ({marks})", pids)
                if seen or len(set(pids)) != len(pids):
                    dup = seen[0][0] if seen else next(p for p in pids if pids.count(p) > 1)
                    raise DuplicateFeedback(f"prediction {dup} already has a label")
            cur.executemany("INSERT INTO feedback (time, model, version, label, correct, example, prediction_id) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [(now, model, version, int(y), int(c), encode_example(x), pid) for x, y, c, pid in rows])
            count = cur.one("SELECT COUNT(*) FROM feedback WHERE model = ?", (model,))[0]
            if count > self.feedback_rows:  # keep the counts, drop the examples nobody will train on
                cutoff = cur.one("SELECT id FROM feedback WHERE model = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                                 (model, self.feedback_rows))
                cur.execute("UPDATE feedback SET example = NULL WHERE model = ? AND id <= ? AND example IS NOT NULL",
                            (model, cutoff[0]))
            return count

    def feedback_count(self, model: str, version: str | None = None) -> int:
        with self.tx() as cur:
            if version is None:
                return cur.one("SELECT COUNT(*) FROM feedback WHERE model = ?", (model,))[0]
            return cur.one("SELECT COUNT(*) FROM feedback WHERE model = ? AND version = ?", (model, version))[0]

    def accuracy(self, model: str, version: str, window: int) -> tuple[float | None, int]:
        """Accuracy over the last `window` rows answered by `version` (None until there are that many)."""
        with self.tx() as cur:
            hits = [r[0] for r in cur.all("SELECT correct FROM feedback WHERE model = ? AND version = ? "
                                          "ORDER BY id DESC LIMIT ?", (model, version, window))]
        return (float(np.mean(hits)) if len(hits) >= window else None), len(hits)

    def feedback_since(self, model: str, start: int, limit: int, upto: int | None = None) -> list[tuple]:
        """(example, label) of the model's rows number start+1..upto (default: all), the newest `limit` of them,
        in order (rows whose example the retention dropped are left out)."""
        with self.tx() as cur:
            total = cur.one("SELECT COUNT(*) FROM feedback WHERE model = ?", (model,))[0]
            end = total if upto is None else min(upto, total)
            n = min(max(end - start, 0), limit)
            got = cur.all("SELECT example, label FROM feedback WHERE model = ? ORDER BY id DESC LIMIT ? OFFSET ?",
                          (model, n, total - end))
        return [(decode_example(x), y) for x, y in reversed(got) if x is not None]

    # ------------------------------------------------------------------------------------------ predictions
    def log_predictions(self, rows: list[tuple]) -> None:
        """rows of (pid, time, model, version, latency_ms, output dict, signal, example); the newest
        `prediction_rows` per model kept."""
        if not rows:
            return
        with self.tx() as cur:
            cur.executemany("INSERT INTO predictions (pid, time, model, version, latency_ms, output, signal, example) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [(pid, t, m, v, lat, json.dumps(out, default=str), sig,
                              None if x is None else encode_example(x)) for pid, t, m, v, lat, out, sig, x in rows])
            for model in {r[2] for r in rows}:
                cutoff = cur.one("SELECT id FROM predictions WHERE model = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                                 (model, self.prediction_rows))
                if cutoff:
                    cur.execute("DELETE FROM predictions WHERE model = ? AND id <= ?", (model, cutoff[0]))

    def predictions(self, pids: list[str]) -> dict[str, dict]:
        """pid -> {model, version, signal, example, output} for the ids still in the log."""
        if not pids:
            return {}
        with self.tx() as cur:
            got = cur.all(f"SELECT pid, model, version, signal, example, output FROM predictions WHERE pid IN "
                          f"({','.join('?' * len(pids))})", list(pids))
        return {pid: {"model": m, "version": v, "signal": s, "example": decode_example(x), "output": json.loads(o)}
                for pid, m, v, s, x, o in got}

    def prediction_count(self, model: str) -> int:
        with self.tx() as cur:
            return cur.one("SELECT COUNT(*) FROM predictions WHERE model = ?", (model,))[0]

    # ------------------------------------------------------------------------------------------ events
    def add_event(self, e: dict) -> int:
        with self.tx() as cur:
            return cur.insert("INSERT INTO events (time, model, kind, body) VALUES (?, ?, ?, ?)",
                              (e["time"], e["model"], e["kind"], json.dumps(e, default=str)))

    def events(self, since: float = 0.0, limit: int = 10_000) -> list[dict]:
        """Events after UNIX time `since`, oldest first (the newest `limit`)."""
        with self.tx() as cur:
            got = cur.all("SELECT id, body FROM events WHERE time > ? ORDER BY id DESC LIMIT ?", (since, limit))
        return [{**json.loads(body), "seq": i} for i, body in reversed(got)]

    def events_after(self, kind: str, model: str, seq: int) -> list[dict]:
        """The model's events of one kind after sequence number `seq`, oldest first."""
        with self.tx() as cur:
            got = cur.all("SELECT id, body FROM events WHERE kind = ? AND model = ? AND id > ? ORDER BY id",
                          (kind, model, seq))
        return [{**json.loads(body), "seq": i} for i, body in got]

    # ------------------------------------------------------------------------------------------ model state
    def save_state(self, model: str, state: dict) -> None:
        body = json.dumps(state, default=str, sort_keys=True)
        with self.tx() as cur:  # an upsert: two replicas starting on an empty store may both write the first row
            cur.execute("INSERT INTO model_state (model, body, updated) VALUES (?, ?, ?) ON CONFLICT (model) "
                        "DO UPDATE SET body = excluded.body, updated = excluded.updated", (model, body, time.time()))

    def load_state(self, model: str) -> dict | None:
        with self.tx() as cur:
            row = cur.one("SELECT body FROM model_state WHERE model = ?", (model,))
        return json.loads(row[0]) if row else None

    def mark_version(self, model: str, version: str, status: str) -> None:
        with self.tx() as cur:
            cur.execute("INSERT INTO versions (model, version, status, time) VALUES (?, ?, ?, ?) ON CONFLICT "
                        "(model, version) DO UPDATE SET status = excluded.status, time = excluded.time",
                        (model, version, status, time.time()))

    def version_marks(self, model: str | None = None) -> dict[tuple[str, str], str]:
        with self.tx() as cur:
            rows = cur.all("SELECT model, version, status FROM versions" + (" WHERE model = ?" if model else ""),
                           (model,) if model else ())
        return {(m, v): s for m, v, s in rows}


    # ------------------------------------------------------------------------------------------ leases
    def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease `name` for `ttl_s` seconds: True if `holder` has it now. One holder at a time:
        the row update is conditional (free, expired, or already ours), and both engines serialise it."""
        now = time.time()
        with self.tx() as cur:
            cur.execute("INSERT INTO leases (name, holder, until) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                        (name, holder, 0.0))
            got = cur.execute("UPDATE leases SET holder = ?, until = ? WHERE name = ? AND (holder = ? OR until < ?)",
                              (holder, now + ttl_s, name, holder, now))
            return got.rowcount == 1

    def release(self, name: str, holder: str) -> None:
        with self.tx() as cur:
            cur.execute("UPDATE leases SET until = 0 WHERE name = ? AND holder = ?", (name, holder))

    def lease_holder(self, name: str) -> str | None:
        with self.tx() as cur:
            row = cur.one("SELECT holder FROM leases WHERE name = ? AND until >= ?", (name, time.time()))
        return row[0] if row else None


class DuplicateFeedback(Exception):
    """Feedback for a prediction that already has its label: 409."""


class Cursor:
    """A DB-API cursor that takes `?` placeholders on both engines."""

    def __init__(self, store: Store, cur):
        self.store, self.cur = store, cur

    def execute(self, q: str, args=()):
        self.cur.execute(self.store.sql(q), tuple(args))
        return self.cur

    def executemany(self, q: str, rows):
        self.cur.executemany(self.store.sql(q), rows)

    def one(self, q: str, args=()):
        return self.execute(q, args).fetchone()

    def all(self, q: str, args=()) -> list:
        return self.execute(q, args).fetchall()

    def insert(self, q: str, args=()) -> int:
        if self.store.engine == "postgresql":
            return self.one(q + " RETURNING id", args)[0]
        return self.execute(q, args).lastrowid


def redact(url: str) -> str:
    """A store URL without its password (for messages and logs)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
