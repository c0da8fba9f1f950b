"""Request rate limits: token buckets per API key, per client address on the public page, and per address
for failed authentications.

Each bucket holds `per_minute` tokens and refills continuously; a request takes one; a bucket that is empty
answers how long to wait (`wait` tells the same without taking a token). `RateLimiter` keeps the buckets in
this process (one service process by default); `RedisRateLimiter` keeps them in Redis, so every replica draws
on one budget. `rate_limiter` picks between them.
"""

import logging
import math
import threading
import time
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# KEYS[1]: the bucket's hash; ARGV: capacity, tokens per second, expiry in ms. The clock is the Redis server's,
# so replicas' clocks don't matter. Both scripts first refill the bucket for the time since its last use.
_REFILL = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, last = tonumber(state[1]) or capacity, tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - last) * rate)
"""
# Take a token; returns the wait (a string: Redis truncates Lua numbers to integers).
TAKE_SCRIPT = (
    _REFILL
    + """
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return tostring(wait)
"""
)
# The same arithmetic, read-only: the wait a request would have, without taking a token.
PEEK_SCRIPT = (
    _REFILL
    + """
if tokens >= 1 then
  return '0'
end
return tostring((1 - tokens) / rate)
"""
)


class RateLimiter:
    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, bucket: str) -> float:
        """Take a token; 0 if allowed, else the seconds to wait before the next one."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(bucket, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill_per_second)
            if tokens >= 1:
                self._buckets[bucket] = (tokens - 1, now)
                return 0.0
            self._buckets[bucket] = (tokens, now)
            return (1 - tokens) / self.refill_per_second

    def wait(self, bucket: str) -> float:
        """The seconds a request would wait now (0 if a token is there), without taking one."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(bucket, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.refill_per_second)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.refill_per_second

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))


class RedisRateLimiter:
    """The same token buckets, shared through Redis by every replica: one atomic Lua script per request.

    Keys are `<prefix>:<name>:<bucket>` (e.g. `headshot:rate:key:<key id>`), hashes of tokens and last refill
    time; a bucket untouched for a minute has refilled, so it expires then and idle buckets vanish.

    Fail-open: if Redis cannot be reached (or answers an error), requests are allowed rather than refused or
    turned into 500s, with one warning per outage; Redis is tried again at most every `RECONNECT_SECONDS`.
    """

    RECONNECT_SECONDS = 5.0
    EXPIRY_MS = 60_000  # any bucket left alone this long is full again, as a missing one is

    def __init__(
        self, per_minute: int, url: str, name: str, *, prefix: str = "headshot:rate", clock=time.monotonic
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self.key_prefix = f"{prefix}:{name}:"
        self._redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), retries=1),  # one quick retry: a pooled connection may be stale
        )
        self._take = self._redis.register_script(TAKE_SCRIPT)
        self._peek = self._redis.register_script(PEEK_SCRIPT)
        self._clock = clock
        self._where = _without_password(url)
        self._down_since: float | None = None  # monotonic time of the last failure while Redis is out
        self._lock = threading.Lock()

    def take(self, bucket: str) -> float:
        """Take a token; 0 if allowed (also while Redis is unreachable), else the seconds to wait."""
        return self._run(self._take, bucket, [self.capacity, self.refill_per_second, self.EXPIRY_MS])

    def wait(self, bucket: str) -> float:
        """The seconds a request would wait now (0 if a token is there, or Redis is unreachable), taking nothing."""
        return self._run(self._peek, bucket, [self.capacity, self.refill_per_second])

    def _run(self, script, bucket: str, args: list) -> float:
        import redis

        if self._down_since is not None and self._clock() - self._down_since < self.RECONNECT_SECONDS:
            return 0.0
        try:
            wait = float(script(keys=[self.key_prefix + bucket], args=args))
        except redis.RedisError as exc:
            with self._lock:
                if self._down_since is None:
                    log.warning("rate limits off: Redis at %s unreachable (%s); allowing requests", self._where, exc)
                self._down_since = self._clock()
            return 0.0
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    log.warning("rate limits on again: Redis at %s answers", self._where)
                self._down_since = None
        return wait

    retry_after = staticmethod(RateLimiter.retry_after)


def rate_limiter(per_minute: int, name: str, redis_url: str | None) -> RateLimiter | RedisRateLimiter:
    """Buckets shared through Redis when `redis_url` is set, else buckets in this process."""
    return RedisRateLimiter(per_minute, redis_url, name) if redis_url else RateLimiter(per_minute)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
