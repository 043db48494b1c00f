"""The SQLite response cache: keys, persistence, atomic concurrent writes, corruption detection."""

import sqlite3
import threading

import pytest

from corea_jax.cascade.cache import CacheCorruptedError, ResponseCache, cache_key, redact_url

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
PARAMS = {"temperature": 0.0, "max_tokens": 64}
URL = "http://127.0.0.1:8000/v1"


def put(cache, key, text="4"):
    cache.put(key, URL, "m", {"messages": MESSAGES, "params": PARAMS}, {"text": text})


def test_key_depends_on_what_determines_the_answer_only():
    base = cache_key(URL, "m", MESSAGES, PARAMS)
    assert cache_key(URL + "/", "m", MESSAGES, dict(reversed(PARAMS.items()))) == base
    assert cache_key(URL, "m", MESSAGES, {**PARAMS, "seed": None}) == base  # None is not sent
    assert cache_key(URL, "m2", MESSAGES, PARAMS) != base
    assert cache_key("http://127.0.0.1:8001/v1", "m", MESSAGES, PARAMS) != base
    assert cache_key(URL, "m", MESSAGES, {**PARAMS, "temperature": 0.7}) != base
    assert cache_key(URL, "m", [{"role": "user", "content": "What is 2+2?"}], PARAMS) != base


def test_redact_url_drops_credentials_query_and_fragment():
    assert redact_url("https://user:pw@API.example.com:8443/v1/?key=s3cret#x") == (
        "https://api.example.com:8443/v1"
    )
    assert cache_key("https://u:p@h/v1?key=a", "m", MESSAGES, {}) == cache_key(
        "https://h/v1", "m", MESSAGES, {}
    )


def test_round_trip_and_persistence_across_reopen(tmp_path):
    path = tmp_path / "sub" / "llm.sqlite"
    with ResponseCache(path) as cache:
        put(cache, "k1", "four")
        put(cache, "k1", "FIVE")  # the first answer is kept
        assert cache.get("k1") == {"text": "four"}
        assert cache.get("k2") is None
    with ResponseCache(path) as cache:
        assert cache.get_many(["k1", "k2"]) == {"k1": {"text": "four"}}
        assert len(cache) == 1 and cache.keys() == {"k1"}


def test_concurrent_writers_lose_nothing(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")

    def write(start):
        for i in range(start, start + 50):
            put(cache, f"k{i}", str(i))

    threads = [threading.Thread(target=write, args=(50 * t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 400
    assert cache.get("k399") == {"text": "399"}
    cache.close()


def test_garbage_file_is_detected_and_left_untouched(tmp_path):
    path = tmp_path / "llm.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(CacheCorruptedError, match=f"response cache {path} is corrupted"):
        ResponseCache(path)
    assert path.read_bytes() == before


def test_another_sqlite_file_is_not_taken_for_a_cache(tmp_path):
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(CacheCorruptedError, match="application id"):
        ResponseCache(path)


def test_damaged_pages_are_detected(tmp_path):
    path = tmp_path / "llm.sqlite"
    with ResponseCache(path) as cache:
        for i in range(300):
            put(cache, f"k{i}", "x" * 200)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page : 4 * page] = b"\xff" * (2 * page)  # wreck two b-tree pages
    path.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptedError, match=str(path)):
        ResponseCache(path)
    assert path.read_bytes() == bytes(data)


def test_tampered_row_fails_its_digest(tmp_path):
    path = tmp_path / "llm.sqlite"
    with ResponseCache(path) as cache:
        put(cache, "k1", "4")
    db = sqlite3.connect(path)
    db.execute("""UPDATE responses SET response = '{"text":"5"}' WHERE key = 'k1'""")
    db.commit()
    db.close()
    with ResponseCache(path) as cache:
        with pytest.raises(CacheCorruptedError, match="digest mismatch"):
            cache.get("k1")
