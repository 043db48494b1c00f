"""A persistent response cache for paid LLM calls, in one SQLite file.

A response is stored under `cache_key(endpoint, model, messages, params)`, a sha256 over the
canonical JSON of what determines the answer: the endpoint (with any user name, password, query or
fragment removed, see `redact_url`; for a backend without one, such as the in-process simulated
LLM, the backend's `identity`), the model name, the chat messages and the sampling
parameters. The API key is never part of a key, a row or a message. So a re-run, or a run resumed
after a crash, makes no paid call twice, and a threshold sweep after the first pass makes none.

Durability and integrity:
- Each response is written in its own transaction as soon as it arrives, in WAL mode with
  `synchronous=NORMAL`: a process killed at any point (SIGKILL included) loses at most the
  responses still in flight, never a committed one, and never leaves a half-written row. (NORMAL
  can lose the last commits on a power failure, not on a process crash; `durable=True` selects
  `synchronous=FULL`.)
- Opening runs SQLite's `PRAGMA quick_check` (`check="full"` runs `integrity_check`, `"none"`
  skips it) and checks the file's application id and schema version. Every row carries a sha256
  digest of its content, checked on each read. Any failure raises `CacheCorruptedError` naming the
  file; the file is never deleted, truncated or rewritten, so what was paid for can be salvaged.
- The first answer stored under a key is kept (`INSERT OR IGNORE`): with sampling at temperature
  > 0 the cached draw *is* the answer, and a resumed run sees the same one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from corea_jax.errors import CoreaError

APPLICATION_ID = 0x436F7265  # "Core": marks the file as ours
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
  key TEXT PRIMARY KEY,
  endpoint TEXT NOT NULL,
  model TEXT NOT NULL,
  request TEXT NOT NULL,
  response TEXT NOT NULL,
  digest TEXT NOT NULL,
  created REAL NOT NULL
)
"""


class CacheCorruptedError(CoreaError):
    """The cache file is unreadable or fails a check; the message names the file."""


def redact_url(url: str) -> str:
    """`url` without user info, query or fragment: what may be stored, hashed or logged."""
    parts = urllib.parse.urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(
        (parts.scheme.lower(), netloc.lower(), parts.path.rstrip("/"), "", "")
    )


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(
    endpoint: str, model: str, messages: Sequence[Mapping[str, str]], params: Mapping[str, object]
) -> str:
    """The sha256 hex key of one request (see the module docstring for what goes in)."""
    payload = {
        "endpoint": redact_url(endpoint),
        "model": model,
        "messages": [dict(m) for m in messages],
        "params": {k: v for k, v in params.items() if v is not None},
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def _digest(key: str, request: str, response: str) -> str:
    return hashlib.sha256("\0".join((key, request, response)).encode()).hexdigest()


class ResponseCache:
    """Thread-safe get/put of JSON responses by key in the SQLite file at `path`.

    Args:
      path: the cache file; its directory is created if needed.
      check: "quick" (default; SQLite's quick_check), "full" (integrity_check) or "none".
      durable: synchronous=FULL instead of NORMAL (survives power loss, slower writes).
      busy_timeout_s: how long to wait for another process holding the write lock.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        check: str = "quick",
        durable: bool = False,
        busy_timeout_s: float = 30.0,
    ):
        if check not in ("quick", "full", "none"):
            raise CoreaError(f"ResponseCache check={check!r}: use 'quick', 'full' or 'none'")
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
            )
        except sqlite3.Error as exc:
            raise CoreaError(f"response cache {self.path}: cannot open ({exc})") from None
        try:
            self._open(check, durable)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._corrupted(str(exc)) from None
        except CoreaError:
            self._db.close()
            raise

    def _corrupted(self, why: str) -> CacheCorruptedError:
        return CacheCorruptedError(
            f"response cache {self.path} is corrupted or not a corea-jax cache ({why}); it was "
            "left untouched: move it aside to start a new cache (answers in it would be paid for "
            "again) or restore a backup"
        )

    def _open(self, check: str, durable: bool) -> None:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        objects = db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        fresh = app_id == 0 and objects == 0
        if not fresh:
            if app_id != APPLICATION_ID:
                raise self._corrupted(f"application id {app_id:#x}, expected {APPLICATION_ID:#x}")
            if check != "none":
                pragma = "quick_check" if check == "quick" else "integrity_check"
                rows = [r[0] for r in db.execute(f"PRAGMA {pragma}").fetchall()]
                if rows != ["ok"]:
                    raise self._corrupted(f"{pragma}: {'; '.join(rows[:3])}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise self._corrupted(f"schema version {version}, expected {SCHEMA_VERSION}")
            columns = [r[1] for r in db.execute("PRAGMA table_info(responses)").fetchall()]
            expected = ["key", "endpoint", "model", "request", "response", "digest", "created"]
            if columns != expected:
                raise self._corrupted(f"table 'responses' has columns {columns}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        if fresh:
            db.execute("BEGIN IMMEDIATE")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")

    def get(self, key: str) -> dict | None:
        """The stored response for `key`, or None."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        """{key: response} for the keys that are stored; each row's digest is verified."""
        keys = list(dict.fromkeys(keys))
        found = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                try:
                    rows = self._db.execute(
                        "SELECT key, request, response, digest FROM responses "
                        f"WHERE key IN ({marks})",
                        chunk,
                    ).fetchall()
                except sqlite3.DatabaseError as exc:
                    raise self._corrupted(str(exc)) from None
                for key, request, response, digest in rows:
                    if _digest(key, request, response) != digest:
                        raise self._corrupted(f"row {key[:16]}...: digest mismatch")
                    try:
                        found[key] = json.loads(response)
                    except ValueError:
                        raise self._corrupted(f"row {key[:16]}...: response is not JSON") from None
        return found

    def put(self, key: str, endpoint: str, model: str, request: Mapping, response: Mapping) -> None:
        """Store `response` under `key` in one transaction (a no-op if the key is stored)."""
        request_json, response_json = canonical_json(request), canonical_json(response)
        row = (
            key,
            redact_url(endpoint),
            model,
            request_json,
            response_json,
            _digest(key, request_json, response_json),
            time.time(),
        )
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)", row
                )
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise self._corrupted(str(exc)) from None

    def keys(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT key FROM responses")}

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
