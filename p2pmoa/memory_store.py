"""SQLite persistence of a node's memory (``<data_dir>/memory.sqlite3``).

Same durability rules as the prompt buffer (:class:`p2pmoa.buffer.SQLiteStore`): WAL mode;
new and deleted entries are written with ``synchronous=FULL`` (on disk before the call
returns, so a remembered answer survives ``kill -9`` and power loss), access-count updates with
``synchronous=NORMAL`` (survive a crash of the process; a power cut may lose a few counts,
which only nudges eviction order).

Private entries never leave the node: nothing in this module or in :mod:`p2pmoa.memory_share`
sends them anywhere; they exist here and in the node's RAM only.

Deletion is real deletion: ``PRAGMA secure_delete=ON`` overwrites deleted content in the
database file, and :meth:`MemorySQLite.clear` also checkpoints and truncates the WAL and
vacuums, so ``p2pmoa memory clear --tier private`` leaves no copy of the text on disk.

Several processes may open the file (the daemon, and ``p2pmoa memory`` while it runs): the
daemon notices another process's commit through ``PRAGMA data_version`` (:meth:`changed`) and
reloads before it next uses memory.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

import numpy as np

from p2pmoa.memory import TIERS, MemoryEntry

log = logging.getLogger(__name__)

_SCHEMA = """CREATE TABLE IF NOT EXISTS entries (
    tier TEXT NOT NULL, entry_id TEXT NOT NULL, query TEXT NOT NULL, answer TEXT NOT NULL,
    vector BLOB NOT NULL, t_added REAL NOT NULL, access_count INTEGER NOT NULL,
    digest BLOB NOT NULL, members TEXT NOT NULL, method TEXT NOT NULL, origin TEXT NOT NULL,
    query_id TEXT NOT NULL, endorsers TEXT NOT NULL, PRIMARY KEY (tier, entry_id))"""


class MemorySQLite:
    """The memory table in SQLite; ``apply`` is the :class:`p2pmoa.memory.Memory` ``on_change``.

    Args:
        path: the database file (its directory is created).
        busy_timeout_s: how long to wait for another process's write lock (default 5 s).
    """

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = 5.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                   timeout=busy_timeout_s)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA synchronous=FULL")
        self._full = True
        self._db.execute(_SCHEMA)
        self._version = self._data_version()

    def _sync(self, durable: bool) -> None:
        if durable != self._full:
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._full = durable

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        """True once after another connection (another process) committed a change."""
        v = self._data_version()
        if v != self._version:
            self._version = v
            return True
        return False

    def apply(self, op: str, e: MemoryEntry | None) -> None:
        if e is None:
            return
        if op == "delete":
            self._sync(True)
            self._db.execute("DELETE FROM entries WHERE tier = ? AND entry_id = ?",
                             (e.tier, e.entry_id))
        elif op == "touch":
            self._sync(False)
            self._db.execute("UPDATE entries SET access_count = ? WHERE tier = ? AND entry_id = ?",
                             (e.access_count, e.tier, e.entry_id))
        else:
            self._sync(True)
            v = np.asarray(e.vector, "<f4")
            self._db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (e.tier, e.entry_id, e.query, e.answer, v.tobytes(), e.t_added, e.access_count,
                 e.digest, json.dumps(list(e.members)), e.method, e.origin, e.query_id,
                 json.dumps(list(e.endorsers))))
        self._version = self._data_version()

    def load(self, tier: str | None = None) -> list[MemoryEntry]:
        """Every stored entry (of ``tier``), oldest first; unreadable rows are skipped, logged."""
        sql = "SELECT * FROM entries" + (" WHERE tier = ?" if tier else "") + " ORDER BY t_added"
        out = []
        for row in self._db.execute(sql, (tier,) if tier else ()):
            try:
                (t, eid, q, a, vec, t_added, n, dig, members, method, origin, qid, ends) = row
                if t not in TIERS:
                    raise ValueError(f"tier {t!r}")
                out.append(MemoryEntry(eid, t, q, a, np.frombuffer(vec, "<f4").copy(),
                                       float(t_added), int(n), bytes(dig),
                                       tuple(json.loads(members)), method, origin, qid,
                                       tuple(json.loads(ends))))
            except (ValueError, TypeError) as exc:
                log.warning("memory store: skipping unreadable row: %s", exc)
        return out

    def get(self, entry_id: str) -> list[MemoryEntry]:
        return [e for e in self.load() if e.entry_id == entry_id]

    def forget(self, entry_id: str, tier: str | None = None) -> int:
        self._sync(True)
        if tier:
            cur = self._db.execute("DELETE FROM entries WHERE entry_id = ? AND tier = ?",
                                   (entry_id, tier))
        else:
            cur = self._db.execute("DELETE FROM entries WHERE entry_id = ?", (entry_id,))
        return cur.rowcount

    def clear(self, tier: str | None = None) -> int:
        """Delete every entry (of ``tier``) and leave no copy in the file or its WAL."""
        self._sync(True)
        if tier:
            n = self._db.execute("DELETE FROM entries WHERE tier = ?", (tier,)).rowcount
        else:
            n = self._db.execute("DELETE FROM entries").rowcount
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    def counts(self) -> dict[str, int]:
        out = {t: 0 for t in TIERS}
        for t, n in self._db.execute("SELECT tier, COUNT(*) FROM entries GROUP BY tier"):
            out[t] = int(n)
        return out

    def close(self) -> None:
        self._db.close()


__all__ = ["MemorySQLite"]
