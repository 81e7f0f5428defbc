"""The cache key separates everything that makes a call distinct; the cache round-trips."""

from tasks.response_cache import CachedResponse, ResponseCache, cache_key

BASE = dict(version_hash="h1", model="m", params={"temperature": 0, "max_tokens": 8}, variables={"q": "x"}, sample=0)


def test_key_changes_with_every_component():
    k = cache_key(**BASE)
    assert k == cache_key(**{**BASE, "params": {"max_tokens": 8, "temperature": 0}})  # order does not matter
    for change in ({"version_hash": "h2"}, {"model": "m2"}, {"params": {"temperature": 1, "max_tokens": 8}},
                   {"variables": {"q": "y"}}, {"sample": 1}):
        assert cache_key(**{**BASE, **change}) != k, change


def test_n_samples_are_n_keys():
    assert len({cache_key(**{**BASE, "sample": i}) for i in range(5)}) == 5


def test_cache_round_trip(tmp_path):
    cache = ResponseCache(tmp_path)
    key = cache_key(**BASE)
    assert cache.get(key) is None
    cache.put(key, CachedResponse(output="Paris", latency_ms=12.5))
    assert cache.get(key) == CachedResponse(output="Paris", latency_ms=12.5)
    assert cache.get(cache_key(**{**BASE, "sample": 1})) is None
