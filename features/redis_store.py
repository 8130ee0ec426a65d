"""Redis FeatureStore: one Lua script per batch chunk, all chunks in one pipelined round trip.

The script checks and sets each event's dedupe mark and applies the event in the same
atomic script run, so a redelivered event never counts twice, even when two workers race
on it. Marks are members of one set per time bucket (a quarter of `dedupe_ttl_s`, by the
Redis clock): per chunk, one SMISMEMBER per live bucket and one SADD, instead of a key
with its own expiry per event (that was a third of Redis's CPU per event). A mark is
checked for at least `dedupe_ttl_s` and at most 1.25 times that; the script UNLINKs the
bucket that left the window (an EXPIREAT one bucket later is the backstop). Aggregates
(counts, popularity, affinities) are summed inside the script per batch and written once
per key, which keeps a 1,000-event batch at a few ms of Redis time.

Keys (namespace `ns`, from the URL query `?namespace=`, default `ss`):
`ns:dedupe:<bucket>` event ids marked in that bucket (bucket = unix seconds // length) ·
`ns:u:<user>:s` recent list ("item␟type␟ts", in ts order, newest last) · `ns:u:<user>:c`
counts by type · `ns:u:<user>:a` category → log2 affinity · `ns:i:<item>:c` counts by type
+ impressions · `ns:i:<item>:m` metadata · `ns:pop` zset of log2 popularity · `ns:fresh`
zset of catalogue items by first ts · `ns:cat:<prefix>` item sets · `ns:cats` categories
in use · `ns:retired` zset of retired items by when (ms, Redis clock) · `ns:restored` zset
of items brought back by when (the last RESTORED_KEEP_MS) · `ns:g` global
counts. The `_all` totals of users and items are not stored: reads add them up (two fewer
writes per event).

A user's events of a chunk that are in ts order and not older than the list's last entry
(LINDEX -1) are one RPUSH (+ LTRIM); a late one makes the script read the capped list
(LRANGE), insert by ts (after entries of the same ts: arrival order) and rewrite it.

The script derives key names from its arguments, which is fine for one Redis server (the
supported deployment); Redis Cluster would need per-slot batches.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

from features.base import (
    ALL,
    IMPRESSIONS,
    RESTORED_KEEP_MS,
    ApplyResult,
    FeatureEvent,
    FeatureStore,
    ImpressionUpdate,
    InteractionUpdate,
    ItemFeatures,
    RecentEvent,
    StoreConfig,
    StoreUnavailable,
    UserFeatures,
    category_prefixes,
    value_now,
)
from features.redis_calls import OrderedScriptCalls

SEP = "\x1f"


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import (
        BusyLoadingError,
        ConnectionError,
        OutOfMemoryError,
        ReadOnlyError,
        TimeoutError,
    )

    # a full server under maxmemory-policy noeviction (OOM) refuses writes until memory is
    # freed, a replica (READONLY) until failover ends: both are waits, not bad data; a script
    # run refused by OOM wrote nothing (Redis refuses only a script's first write)
    return (
        ConnectionError,
        TimeoutError,
        BusyLoadingError,
        OutOfMemoryError,
        ReadOnlyError,
        OSError,
    )


UNAVAILABLE = _unavailable_errors()


@contextlib.contextmanager
def as_unavailable() -> Iterator[None]:
    """Connection errors, timeouts and a loading server surface as `StoreUnavailable`: the
    one signal callers handle (a writer retries, the scorer serves without the read)."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise StoreUnavailable(f"redis: {exc}") from exc


# client defaults unless the URL sets them: a black-holed server must surface as an error
# within seconds, not after the OS gives up on the connection
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 10.0
CHUNK = 2000  # events per script run (bounds how long one run blocks Redis)
READ_CHUNK = 500  # users per read script run

APPLY_LUA = r"""
local ns = ARGV[1]
local ttl = tonumber(ARGV[2])
local seqlen = tonumber(ARGV[3])
local phl = tonumber(ARGV[4])
local ahl = tonumber(ARGV[5])
local LN2 = math.log(2)
local SEP = "\31"
local function lse(a, b)
  if a == nil then return b end
  if a >= b then return a + math.log(1 + 2 ^ (b - a)) / LN2 end
  return b + math.log(1 + 2 ^ (a - b)) / LN2
end
local function fmt(x) return string.format("%.17g", x) end
local res = {0, 0, 0, 0, 0, 0}
local g = {}
local ucnt, uorder = {}, {}
local useq, uts, ulate = {}, {}, {}
local uaff = {}
local icnt, iorder = {}, {}
local pop, porder = {}, {}
local catcache = {}
local function ginc(f, n) g[f] = (g[f] or 0) + n end
local function inc(tab, order, key, f)
  local t = tab[key]
  if t == nil then t = {}; tab[key] = t; order[#order + 1] = key end
  t[f] = (t[f] or 0) + 1
end
-- the ts of a list entry "item<US>type<US>ts" (its last field), as a number: epoch ms are exact
local function entry_ts(entry) return tonumber(string.match(entry, "[^\31]*$")) end
local function item_cat(item)
  local c = catcache[item]
  if c == nil then
    c = redis.call("HGET", ns .. ":i:" .. item .. ":m", "cat") or ""
    catcache[item] = c
  end
  return c
end
local evs = cjson.decode(ARGV[6])
-- dedupe marks: one set per bucket of `span` s; a mark of bucket k is checked until
-- bucket k + nb ends, at least ttl after it was written
local clock = redis.call("TIME")
local now = tonumber(clock[1])
local now_ms = now * 1000 + math.floor(tonumber(clock[2]) / 1000)
local retired = ns .. ":retired"
local restored = ns .. ":restored"
local restored_keep_ms = __RESTORED_KEEP_MS__
local span = math.ceil(ttl / 4)
local nb = math.ceil(ttl / span)
local cur = math.floor(now / span)
local dkey = ns .. ":dedupe:"
local ids = {}
for i, e in ipairs(evs) do ids[i] = e[2] end
local seen = {}
for b = cur - nb, cur do
  local key = dkey .. b
  if redis.call("EXISTS", key) == 1 then
    for j = 1, #ids, 1000 do
      local r = redis.call("SMISMEMBER", key, unpack(ids, j, math.min(j + 999, #ids)))
      for n = 1, #r do if r[n] == 1 then seen[j + n - 1] = true end end
    end
  end
end
-- the new events: first of their id in the window and in this batch
local isfresh = {}
local marked = {}
local new_ids = {}
for i, e in ipairs(evs) do
  if not seen[i] and not marked[e[2]] then
    marked[e[2]] = true
    isfresh[i] = true
    new_ids[#new_ids + 1] = e[2]
  end
end
-- the marks are the run's first write: Redis refuses only a script's first write when full
-- (maxmemory, noeviction), and SADD is refused, so a full server rejects the whole run with
-- nothing changed (a delete first would let every later write pass the memory limit)
if #new_ids > 0 then
  local key = dkey .. cur
  for j = 1, #new_ids, 1000 do
    redis.call("SADD", key, unpack(new_ids, j, math.min(j + 999, #new_ids)))
  end
  redis.call("EXPIREAT", key, (cur + nb + 2) * span)
end
for i, e in ipairs(evs) do
  local kind = e[1]
  local fresh = isfresh[i]
  if kind == "I" then
    local user, item, typ, tn, w = e[3], e[4], e[5], e[6], e[7]
    if fresh then
      res[1] = res[1] + 1
      local s, st = useq[user], uts[user]
      if s == nil then s = {}; st = {}; useq[user] = s; uts[user] = st end
      local n = #s + 1
      if n > 1 and tn < st[n - 1] then ulate[user] = true end
      s[n] = item .. SEP .. typ .. SEP .. string.format("%d", tn)
      st[n] = tn
      inc(ucnt, uorder, user, typ)
      inc(icnt, iorder, item, typ)
      ginc(typ, 1); ginc("_all", 1)
      if w > 0 then
        local t = tn / 1000
        local lw = math.log(w) / LN2
        if pop[item] == nil then porder[#porder + 1] = item end
        pop[item] = lse(pop[item], lw + t / phl)
        local cat = item_cat(item)
        if cat ~= "" then
          local a = uaff[user]
          if a == nil then a = {}; uaff[user] = a end
          a[cat] = lse(a[cat], lw + t / ahl)
        end
      end
    else
      res[2] = res[2] + 1
    end
  elseif kind == "M" then
    if fresh then
      res[3] = res[3] + 1
      ginc("impressions", 1)
      for _, it in ipairs(e[3]) do inc(icnt, iorder, it, "impressions") end
    else
      res[4] = res[4] + 1
    end
  else
    -- item: id, ts, path json, attrs json, text (false = none), cat, prefixes, available
    local item, ts, path, attrs, text, cat, prefixes = e[3], e[4], e[5], e[6], e[7], e[8], e[9]
    local available = e[10]
    if fresh then
      res[5] = res[5] + 1
      local mkey = ns .. ":i:" .. item .. ":m"
      local old = redis.call("HMGET", mkey, "pfx", "ts", "uts", "off")
      local added = ts
      if old[3] and tonumber(ts) < tonumber(old[3]) then
        -- a stale version arriving late: keep the newer metadata, only first-seen may move
        if tonumber(ts) < tonumber(old[2]) then
          redis.call("HSET", mkey, "ts", ts)
          if not old[4] then redis.call("ZADD", ns .. ":fresh", ts, item) end
        end
      else
        if old[1] then
          for _, p in ipairs(cjson.decode(old[1])) do
            local ck = ns .. ":cat:" .. p
            redis.call("SREM", ck, item)
            if redis.call("SCARD", ck) == 0 then redis.call("SREM", ns .. ":cats", p) end
          end
          if tonumber(old[2]) < tonumber(ts) then added = old[2] end
        else
          ginc("items", 1)
        end
        if available then
          for _, p in ipairs(prefixes) do
            redis.call("SADD", ns .. ":cat:" .. p, item)
            redis.call("SADD", ns .. ":cats", p)
          end
        end
        redis.call("DEL", mkey)
        local fields = {"path", path, "attrs", attrs, "cat", cat, "ts", added, "uts", ts}
        if #prefixes > 0 then
          fields[#fields + 1] = "pfx"; fields[#fields + 1] = cjson.encode(prefixes)
        end
        if text then fields[#fields + 1] = "text"; fields[#fields + 1] = text end
        if available then
          redis.call("ZADD", ns .. ":fresh", added, item)
          if redis.call("ZREM", retired, item) == 1 then  -- brought back: readers poll these
            redis.call("ZADD", restored, now_ms, item)
            redis.call("ZREMRANGEBYSCORE", restored, "-inf", now_ms - restored_keep_ms - 1)
          end
        else
          -- retired: out of the lists and listings (metadata kept); the first time counts
          fields[#fields + 1] = "off"; fields[#fields + 1] = "1"
          redis.call("ZREM", ns .. ":fresh", item)
          redis.call("ZREM", ns .. ":pop", item)
          redis.call("ZADD", retired, "NX", now_ms, item)
          redis.call("ZREM", restored, item)
        end
        redis.call("HSET", mkey, unpack(fields))
        catcache[item] = cat
      end
    else
      res[6] = res[6] + 1
    end
  end
end
for _, user in ipairs(uorder) do
  local key = ns .. ":u:" .. user
  local lkey = key .. ":s"
  local s, st = useq[user], uts[user]
  local last = redis.call("LINDEX", lkey, -1)
  -- the list is never empty once a user has an interaction: without one, the user is new
  local isnew = not last
  if not ulate[user] and (isnew or st[1] >= entry_ts(last)) then
    -- in ts order (the common case): append; RPUSH returns the length, trim only a list
    -- that outgrew the cap
    local len = 0
    for j = 1, #s, 1000 do
      len = redis.call("RPUSH", lkey, unpack(s, j, math.min(j + 999, #s)))
    end
    if len > seqlen then redis.call("LTRIM", lkey, -seqlen, -1) end
  else
    -- a late event: insert each one (arrival order) after the entries of its ts or older,
    -- keep the newest seqlen; one older than every entry of a full list stays out
    local l = isnew and {} or redis.call("LRANGE", lkey, -seqlen, -1)
    local lt = {}
    for j = 1, #l do lt[j] = entry_ts(l[j]) end
    for j = 1, #s do
      local t, n = st[j], #l
      if n == 0 or t >= lt[n] then
        l[n + 1] = s[j]; lt[n + 1] = t
      elseif n < seqlen or t >= lt[1] then
        local pos = n
        while pos > 1 and lt[pos - 1] > t do pos = pos - 1 end
        table.insert(l, pos, s[j]); table.insert(lt, pos, t)
      end
      if #l > seqlen then table.remove(l, 1); table.remove(lt, 1) end
    end
    redis.call("DEL", lkey)
    for j = 1, #l, 1000 do
      redis.call("RPUSH", lkey, unpack(l, j, math.min(j + 999, #l)))
    end
  end
  if isnew then ginc("users", 1) end
  -- per-type counts only: `_all` is their sum, added when reading
  for f, v in pairs(ucnt[user]) do redis.call("HINCRBY", key .. ":c", f, v) end
  local a = uaff[user]
  if a ~= nil then
    for cat, v in pairs(a) do
      local old = redis.call("HGET", key .. ":a", cat)
      if old then v = lse(tonumber(old), v) end
      redis.call("HSET", key .. ":a", cat, fmt(v))
    end
  end
end
for _, item in ipairs(iorder) do
  local ck = ns .. ":i:" .. item .. ":c"
  for f, v in pairs(icnt[item]) do redis.call("HINCRBY", ck, f, v) end
end
for _, item in ipairs(porder) do
  if not redis.call("ZSCORE", retired, item) then  -- a retired item gains no popularity
    local old = redis.call("ZSCORE", ns .. ":pop", item)
    local v = pop[item]
    if old then v = lse(tonumber(old), v) end
    redis.call("ZADD", ns .. ":pop", fmt(v), item)
  end
end
for f, v in pairs(g) do redis.call("HINCRBY", ns .. ":g", f, v) end
-- the bucket that just left the window (a no-op once gone)
redis.call("UNLINK", dkey .. (cur - nb - 1))
return res
""".replace("__RESTORED_KEEP_MS__", str(RESTORED_KEEP_MS))

# every requested user's sequence, counts and affinities in one script call: a pipeline of
# three commands per user costs ~10 us of client-side packing per command; one call does not
# (ARGV: namespace, "1" to include the counts hash or "0", user ids)
READ_USERS_LUA = r"""
local ns = ARGV[1]
local with_counts = ARGV[2] == "1"
local out = {}
for i = 3, #ARGV do
  local base = ns .. ":u:" .. ARGV[i] .. ":"
  out[#out + 1] = redis.call("LRANGE", base .. "s", 0, -1)
  if with_counts then
    out[#out + 1] = redis.call("HGETALL", base .. "c")
  end
  out[#out + 1] = redis.call("HGETALL", base .. "a")
end
return out
"""

_KINDS = ("interaction", "impression", "item")


def _row(ev: FeatureEvent) -> Sequence[Any]:
    """One event as the JSON row the script reads (an interaction's ts is a JSON integer:
    epoch ms are exact in a Lua number; the script formats it back with %d)."""
    if isinstance(ev, InteractionUpdate):  # its fields in order: id, user, item, type, ts, weight
        return ("I", *ev)
    if isinstance(ev, ImpressionUpdate):
        return ["M", ev.event_id, list(ev.slate)]
    return [
        "T",
        ev.event_id,
        ev.item_id,
        str(ev.ts),
        json.dumps(list(ev.category_path)),
        json.dumps(dict(ev.attributes), sort_keys=True),
        False if ev.text is None else ev.text,
        ev.category,
        category_prefixes(ev.category_path),
        ev.available,
    ]


def _with_total(raw: dict[Any, Any]) -> dict[str, int]:
    """Counts by type from a Redis hash, plus `_all` = their sum (impressions excluded)."""
    counts = {_s(k): int(v) for k, v in raw.items()}
    counts.pop(ALL, None)
    total = sum(v for k, v in counts.items() if k != IMPRESSIONS)
    if total:
        counts[ALL] = total
    return counts


def _affinity(flat: Sequence[Any], now_ms: float, half_life_s: float) -> dict[str, float]:
    """A script's HGETALL reply of an affinity hash, decayed to now."""
    return {
        _s(flat[j]): value_now(float(flat[j + 1]), now_ms, half_life_s)
        for j in range(0, len(flat), 2)
    }


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    """A script's HGETALL reply (field, value, field, value, ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def durability_warnings_for(config: dict[str, str]) -> list[str]:
    """Settings of a Redis server (CONFIG GET) under which applied updates can be lost or
    counted twice after their offsets were committed."""
    out = []
    maxmemory = int(config.get("maxmemory", "0") or 0)
    policy = config.get("maxmemory-policy", "noeviction")
    if maxmemory > 0 and policy != "noeviction":
        out.append(
            f"Redis evicts keys when full (maxmemory {maxmemory} bytes, maxmemory-policy "
            f"{policy}): features and dedupe marks can vanish, so updates are lost and "
            "redelivered events counted twice; set maxmemory-policy noeviction (a full Redis "
            "then refuses writes and the workers wait without committing)"
        )
    if config.get("appendonly", "yes") == "no":
        lost = (
            "every feature"
            if not config.get("save", "").strip()
            else "the updates since the last RDB snapshot"
        )
        out.append(
            f"Redis has no append-only file (appendonly no): a restart loses {lost} while the "
            "Kafka offsets stay committed; set appendonly yes, or run `slatestream features "
            "rebuild` into an empty store after a restart"
        )
    return out


def parse_url(url: str) -> tuple[str, str]:
    """Split our own `namespace` query parameter off a redis URL: (redis URL, namespace)."""
    parsed = urlparse(url)
    query = parse_qsl(parsed.query, keep_blank_values=True)
    ns = "ss"
    rest = []
    for k, v in query:
        if k == "namespace":
            ns = v or ns
        else:
            rest.append((k, v))
    return urlunparse(parsed._replace(query=urlencode(rest))), ns


def with_namespace(url: str, namespace: str) -> str:
    """`url` with our `namespace` query parameter set (the inverse of `parse_url`; other query
    parameters, e.g. redis-py's `ssl_ca_certs`, are kept)."""
    base, _ = parse_url(url)
    parsed = urlparse(base)
    query = urlencode([*parse_qsl(parsed.query, keep_blank_values=True), ("namespace", namespace)])
    return urlunparse(parsed._replace(query=query))


class RedisFeatureStore(FeatureStore):
    """Features in Redis through `redis.asyncio`; writes are one round trip per batch."""

    def __init__(
        self, url: str, config: StoreConfig | None = None, *, namespace: str | None = None
    ) -> None:
        import redis.asyncio as aioredis

        redis_url, ns = parse_url(url)
        self.namespace = namespace or ns
        self.config = config or StoreConfig()
        self.client = aioredis.Redis.from_url(
            redis_url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S
        )
        # batches go out at once and run in call order on one connection of their own
        self._apply = OrderedScriptCalls(self.client, APPLY_LUA)
        self._read_users = self.client.register_script(READ_USERS_LUA)
        self.clock = time.time

    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    # --- writes ---------------------------------------------------------------------------
    async def apply_many(self, events: Sequence[FeatureEvent]) -> ApplyResult:
        """Run the apply script over the batch (a run per chunk, sent together); durable once
        executed. A call may start while an earlier one runs: Redis runs them in call order."""
        res = ApplyResult()
        if not events:
            return res
        cfg = self.config
        head = [
            self.namespace,
            str(cfg.dedupe_ttl_s),
            str(cfg.sequence_length),
            repr(cfg.popularity_half_life_s),
            repr(cfg.affinity_half_life_s),
        ]
        # each chunk as one JSON argument: cheap to pack in Python, decoded in C by cjson
        runs = [
            [*head, json.dumps([_row(ev) for ev in events[i : i + CHUNK]], separators=(",", ":"))]
            for i in range(0, len(events), CHUNK)
        ]
        with as_unavailable():
            outs = await self._apply.call(runs)
        for out in outs:
            for j, kind in enumerate(_KINDS):
                a, d = int(out[2 * j]), int(out[2 * j + 1])
                if a:
                    res.applied[kind] = res.applied.get(kind, 0) + a
                if d:
                    res.duplicates[kind] = res.duplicates.get(kind, 0) + d
        return res

    # --- reads ----------------------------------------------------------------------------
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserFeatures]:
        """Recent list, counts and affinities of each user in one round trip."""
        users = list(dict.fromkeys(user_ids))
        rows = await self._read(users, with_counts=True)
        now_ms = self.clock() * 1000.0
        hl = self.config.affinity_half_life_s
        out: dict[str, UserFeatures] = {}
        for n, u in enumerate(users):
            seq, counts, aff = rows[3 * n : 3 * n + 3]
            recent = []
            for entry in seq:
                item, typ, ts = _s(entry).rsplit(SEP, 2)
                recent.append(RecentEvent(item, typ, int(ts)))
            out[u] = UserFeatures(
                user_id=u,
                recent=recent,
                counts=_with_total(_pairs(counts)),
                affinity=_affinity(aff, now_ms, hl),
            )
        return out

    async def recent_and_affinity(
        self, user_ids: Sequence[str]
    ) -> dict[str, tuple[list[str], dict[str, float]]]:
        """Recent item ids and decayed affinities: the read of `get_many` without the counts
        hash and without parsing event types and timestamps (~6x less client CPU per user)."""
        users = list(dict.fromkeys(user_ids))
        rows = await self._read(users, with_counts=False)
        now_ms = self.clock() * 1000.0
        hl = self.config.affinity_half_life_s
        return {
            u: (
                [_s(e).rsplit(SEP, 2)[0] for e in rows[2 * n]],
                _affinity(rows[2 * n + 1], now_ms, hl),
            )
            for n, u in enumerate(users)
        }

    async def _read(self, users: list[str], with_counts: bool) -> list[Any]:
        """The read script's flat reply over `users` (chunked: bounds how long a run blocks)."""
        rows: list[Any] = []
        flag = "1" if with_counts else "0"
        with as_unavailable():
            for j in range(0, len(users), READ_CHUNK):
                chunk = users[j : j + READ_CHUNK]
                rows += await self._read_users(keys=[], args=[self.namespace, flag, *chunk])
        return rows

    async def items_many(self, item_ids: Sequence[str]) -> dict[str, ItemFeatures]:
        """Metadata, counts and popularity of each item in one round trip."""
        items = list(dict.fromkeys(item_ids))
        if not items:
            return {}
        with as_unavailable():
            async with self.client.pipeline(transaction=False) as pipe:
                for i in items:
                    pipe.hgetall(self._k("i", i, "m"))
                    pipe.hgetall(self._k("i", i, "c"))
                    pipe.zscore(self._k("pop"), i)
                rows = await pipe.execute()
        now_ms = self.clock() * 1000.0
        hl = self.config.popularity_half_life_s
        out: dict[str, ItemFeatures] = {}
        for n, i in enumerate(items):
            meta, counts, score = rows[3 * n : 3 * n + 3]
            kw: dict[str, Any] = {}
            if meta:
                m = {_s(k): _s(v) for k, v in meta.items()}
                kw = {
                    "known": True,
                    "category_path": tuple(json.loads(m["path"])),
                    "attributes": json.loads(m["attrs"]),
                    "text": m.get("text"),
                    "added_ts": int(m["ts"]),
                    "available": m.get("off") != "1",
                }
            out[i] = ItemFeatures(
                item_id=i,
                counts=_with_total(counts),
                popularity=value_now(float(score), now_ms, hl) if score is not None else 0.0,
                **kw,
            )
        return out

    async def categories(self, item_ids: Sequence[str]) -> dict[str, str]:
        """Category of each known item (one pipelined HGET per item)."""
        items = list(dict.fromkeys(item_ids))
        if not items:
            return {}
        with as_unavailable():
            async with self.client.pipeline(transaction=False) as pipe:
                for i in items:
                    pipe.hget(self._k("i", i, "m"), "cat")
                rows = await pipe.execute()
        return {i: _s(c) for i, c in zip(items, rows, strict=True) if c is not None}

    async def popular(self, n: int, now_ms: float | None = None) -> list[tuple[str, float]]:
        """ZREVRANGE of the log2 popularity, converted to values now."""
        if n <= 0:
            return []
        now = self.clock() * 1000.0 if now_ms is None else now_ms
        hl = self.config.popularity_half_life_s
        with as_unavailable():
            rows: Any = await self.client.zrevrange(self._k("pop"), 0, n - 1, withscores=True)
        return [(_s(i), value_now(float(s), now, hl)) for i, s in rows]

    async def fresh(self, n: int) -> list[str]:
        """Newest catalogue items first."""
        if n <= 0:
            return []
        with as_unavailable():
            rows: Any = await self.client.zrevrange(self._k("fresh"), 0, n - 1)
        return [_s(i) for i in rows]

    async def retired(self, since_ms: int = 0) -> dict[str, int]:
        """ZRANGEBYSCORE of the retired items by when they were retired."""
        with as_unavailable():
            rows: Any = await self.client.zrangebyscore(
                self._k("retired"), since_ms, "+inf", withscores=True
            )
        return {_s(i): int(t) for i, t in rows}

    async def restored(self, since_ms: int = 0) -> dict[str, int]:
        """ZRANGEBYSCORE of the items brought back by when."""
        with as_unavailable():
            rows: Any = await self.client.zrangebyscore(
                self._k("restored"), since_ms, "+inf", withscores=True
            )
        return {_s(i): int(t) for i, t in rows}

    async def items(self, category: str | None = None) -> list[str]:
        """Catalogue items, optionally under a category prefix."""
        with as_unavailable():
            if category is None:
                rows: Any = await self.client.zrange(self._k("fresh"), 0, -1)
            else:
                rows = await self.client.smembers(self._k("cat", category.strip("/")))
        return sorted(_s(i) for i in rows)

    async def category_list(self) -> list[str]:
        """Category prefixes in use."""
        with as_unavailable():
            rows: Any = await self.client.smembers(self._k("cats"))
        return sorted(_s(c) for c in rows)

    async def global_counts(self) -> dict[str, int]:
        """Global counters."""
        with as_unavailable():
            rows = await self.client.hgetall(self._k("g"))
        return {_s(k): int(v) for k, v in rows.items() if int(v)}

    async def is_empty(self) -> bool:
        """No global counter yet."""
        with as_unavailable():
            return not await self.client.exists(self._k("g"), self._k("fresh"))

    async def clear(self) -> None:
        """UNLINK every key of this namespace."""
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=f"{self.namespace}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await self.client.unlink(*batch)
                batch = []
        if batch:
            await self.client.unlink(*batch)

    async def durability_warnings(self) -> list[str]:
        """`durability_warnings_for` the server's CONFIG (unchecked where CONFIG is refused)."""
        from redis.exceptions import ResponseError

        try:
            with as_unavailable():
                raw = await self.client.config_get("*")
        except ResponseError as exc:  # managed services often rename or disable CONFIG
            return [f"Redis refused CONFIG GET ({exc}): eviction and persistence not checked"]
        return durability_warnings_for({_s(k): _s(v) for k, v in raw.items()})

    async def ping(self) -> bool:
        """True when Redis answers."""
        return bool(await self.client.ping())

    async def close(self) -> None:
        """Close the writes' connection and the connection pool."""
        await self._apply.aclose()
        await self.client.aclose()


__all__ = ["ALL", "RedisFeatureStore", "durability_warnings_for", "parse_url"]
