"""Redis as the shared cache of shoppers' recent events (`[serve] redis_url`): the read every
recommendation makes, kept out of the database. The database stays the record; the cache holds the
newest events of each user it has seen, as entries (pos, item, type, value), newest first.

Consistency without locks: a write appends to a user's list only if the list exists (else the next
read fills it from the database); a fill writes only if the list is still absent, then checks that no
newer event was committed meanwhile (and drops the list if one was). Entries carry the event's
position, so an event that reaches the list twice is read once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["RecentCache", "redis_client"]

log = logging.getLogger("vitrina.serving")

Entry = tuple[int, str, str, float]  # (pos, item id, type, value)

# A user's list is never empty: an empty history is this one entry.
_EMPTY = "-"
_PUSH = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('LPUSH', KEYS[1], unpack(ARGV, 3))
  redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""
_FILL = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
  return 1
end
return 0
"""


def redis_client(url: str) -> Any:
    """A client for `[serve] redis_url`: a short timeout, so a Redis that stops answering costs a
    request 2 s once and the callers fall back to the database."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=2.0)


class RecentCache:
    def __init__(self, client: Any, keep: int = 500, ttl_s: int = 86_400, prefix: str = "vitrina:recent:") -> None:
        self.client, self.keep, self.ttl_s, self.prefix = client, keep, ttl_s, prefix
        self._push = client.register_script(_PUSH)
        self._fill = client.register_script(_FILL)

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> RecentCache:
        return cls(redis_client(url), **kw)

    def _key(self, user_id: str) -> str:
        return self.prefix + user_id

    def push(self, entries: Sequence[tuple[str, Entry]]) -> None:
        """Events just committed, as (user id, entry), oldest first."""
        by_user: dict[str, list[str]] = {}
        for user_id, entry in entries:
            by_user.setdefault(user_id, []).append(json.dumps(entry))
        pipe = self.client.pipeline(transaction=False)
        for user_id, values in by_user.items():
            self._push(keys=[self._key(user_id)], args=[self.keep, self.ttl_s, *values], client=pipe)
        pipe.execute()

    def get(self, user_id: str, load: Callable[[], list[Entry]], latest: Callable[[], int]) -> list[Entry]:
        """The user's cached entries, newest first; on a miss `load()` reads them from the
        database (newest first) and `latest()` says the newest committed position after filling."""
        raw = self.client.lrange(self._key(user_id), 0, self.keep - 1)
        if raw:
            return _decode(raw)
        entries = load()
        values = [json.dumps(e) for e in entries] or [_EMPTY]
        self._fill(keys=[self._key(user_id)], args=[self.ttl_s, *values])
        newest = entries[0][0] if entries else 0
        if latest() > newest:  # an event was committed while we filled: let the next read refill
            self.forget(user_id)
        return entries

    def forget(self, user_id: str) -> None:
        self.client.delete(self._key(user_id))


def _decode(raw: list[bytes]) -> list[Entry]:
    seen: set[int] = set()
    out: list[Entry] = []
    for value in raw:
        if value == _EMPTY.encode():
            continue
        pos, item, kind, weight = json.loads(value)
        if pos not in seen:
            seen.add(pos)
            out.append((int(pos), item, kind, float(weight)))
    out.sort(key=lambda e: -e[0])
    return out
