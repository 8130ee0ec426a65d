"""Script calls sent at once on one Redis connection and answered in call order.

A feature worker writes batch N+1 while batch N's script still runs. Sent on the pool's
connections, N+1 would wait for its caller's event loop to get N's reply first (the loop is
busy decoding the next fetch), and two connections give no order between the batches.
Sent on one connection, Redis runs N+1 right after N, in call order, and the replies come
back in that order. One feature worker: 86-109k instead of 54-59k events/s.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any


class OrderedScriptCalls:
    """Runs one Lua script on a dedicated connection: each call writes its requests at once
    (earlier calls may still be running) and reads its replies after theirs.

    Any error drops the connection, as the replies still on it are unknown: the calls behind
    it fail too (a `ConnectionError`, so writers retry) and the next call opens a new
    connection, which loads the script before anything else is sent on it."""

    def __init__(self, client: Any, script: str) -> None:
        self._client = client
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._conn: Any = None
        # sends (and drops) in call order: asyncio locks are FIFO, and a connection is never
        # closed under a send
        self._send_lock = asyncio.Lock()
        self._tail: asyncio.Future[None] | None = None  # the latest call's reads are done

    async def call(self, arg_lists: Sequence[Sequence[Any]]) -> list[Any]:
        """Run the script once per argument list (no keys); the replies in order."""
        from redis.exceptions import ConnectionError, NoScriptError, RedisError

        before, mine = self._tail, asyncio.get_running_loop().create_future()
        self._tail = mine
        conn = None
        try:
            async with self._send_lock:
                conn = await self._connection()
                commands = [("EVALSHA", self._sha, 0, *args) for args in arg_lists]
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            if before is not None:
                await asyncio.shield(before)  # its replies come first on this connection
            if self._conn is not conn:  # an error before ours dropped it with our replies
                raise ConnectionError("redis: an earlier script call failed on this connection")
            return [await conn.read_response() for _ in arg_lists]
        except NoScriptError as exc:  # the server's script cache was flushed: load it again
            await self._drop(conn)
            raise ConnectionError(f"redis: {exc}") from exc
        except (RedisError, OSError, asyncio.CancelledError):
            await self._drop(conn)
            raise
        except Exception as exc:  # what a connection closed under a read may raise
            await self._drop(conn)
            raise ConnectionError(f"redis: script call lost its connection ({exc!r})") from exc
        finally:
            mine.set_result(None)
            if self._tail is mine:
                self._tail = None

    async def aclose(self) -> None:
        """Close the dedicated connection (a later call opens a new one)."""
        await self._drop(self._conn)

    async def _connection(self) -> Any:
        """The dedicated connection (the pool's settings, outside the pool), opened and the
        script loaded when there is none; called under the send lock."""
        if self._conn is None:
            conn = self._client.connection_pool.make_connection()
            try:
                await conn.connect()
                await conn.send_command("SCRIPT", "LOAD", self._script)
                await conn.read_response()
            except BaseException:
                await conn.disconnect()
                raise
            self._conn = conn
        return self._conn

    async def _drop(self, conn: Any) -> None:
        """Close `conn` and forget it, if it is still the dedicated one."""
        if conn is None:
            return
        async with self._send_lock:
            if self._conn is conn:
                self._conn = None
                await conn.disconnect()


__all__ = ["OrderedScriptCalls"]
