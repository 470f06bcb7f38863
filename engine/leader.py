"""One leader among the API processes sharing a PostgreSQL store, by a session advisory lock.

The leader alone runs what must run once: recovery, the workers and their dispatcher, and the webhook
outbox (engine/engine.py ``Engine._take_lead``). The lock lives on a connection of its own and is held for
the process's life; PostgreSQL releases it when that session ends, which is at once when the process dies
(its socket closes) and, across a network, when TCP keepalive gives up on it. Followers ask for the lock
every ``poll_seconds``, so one takes over within about that long after the leader is gone.

A leader whose own connection breaks while it lives can no longer know that nobody else leads, so it
stops its duties at once (two leaders would deliver webhooks twice), and only once they have stopped does it
campaign again, on a new connection: after a PostgreSQL restart, a lone API process leads again instead of
accepting jobs that nobody runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Awaitable, Callable

import psycopg

from engine.postgres import LEADER_LOCK

__all__ = ("APPLICATION_NAME", "Leadership")

log = logging.getLogger(__name__)

APPLICATION_NAME = "drylocal-leadership"
"""The campaign session's name, with the process id: ``pg_stat_activity`` joined to ``pg_locks`` shows who leads."""
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
"""A leader host that vanishes from the network loses its session (and the lock) in about 11 s."""


class Leadership:
    def __init__(
        self,
        url: str,
        on_elected: Callable[[], Awaitable[None]],
        on_deposed: Callable[[], Awaitable[None]],
        poll_seconds: float = 1.0,
    ) -> None:
        self.url = url
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.poll_seconds = poll_seconds
        self.leading = False
        self._task: asyncio.Task | None = None
        self._conn: psycopg.AsyncConnection | None = None

    async def start(self) -> None:
        """Campaign in the background (the first try is made before this returns)."""
        first_try = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._campaign(first_try), name="drylocal-leadership")
        await asyncio.wait((first_try, self._task), return_when=asyncio.FIRST_COMPLETED)

    async def stop(self) -> None:
        """Stop campaigning or leading; closing the session hands the lock to the next process."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._close_session()

    async def _campaign(self, first_try: asyncio.Future) -> None:
        while True:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, application_name=f"{APPLICATION_NAME} pid={os.getpid()}", **_KEEPALIVE
                )
                while not await self._try_lock():
                    _settle(first_try)
                    await asyncio.sleep(self.poll_seconds)
                self.leading = True
                log.info("this process leads: it runs the jobs and delivers the webhooks")
                try:
                    await self.on_elected()
                except psycopg.OperationalError:  # the database went away meanwhile: deposed, as below
                    raise
                except Exception:  # a leader that cannot start its duties must let another lead
                    log.exception("starting the leader's duties failed; handing leadership on")
                    self.leading = False
                    await self.on_deposed()
                    await self._close_session()
                    _settle(first_try)
                    return
                _settle(first_try)
                while True:  # hold the lock; a broken session shows here
                    await asyncio.sleep(self.poll_seconds)
                    await self._conn.execute("SELECT 1")
            except psycopg.OperationalError:
                _settle(first_try)
                await self._close_session()
                if self.leading:
                    self.leading = False
                    log.error("lost the leader's PostgreSQL session: this process stops leading, then campaigns again")
                    try:
                        await self.on_deposed()
                    except Exception:  # what did stop has stopped; what did not is not retried by staying out
                        log.exception("stopping the leader's duties failed")
                else:
                    log.warning("cannot reach PostgreSQL to campaign for leadership; retrying", exc_info=True)
                await asyncio.sleep(self.poll_seconds)

    async def _close_session(self) -> None:
        """Close the campaign session (a broken one too: the server may still hold it, and its lock, a while)."""
        if self._conn is not None:
            try:
                await self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    async def _try_lock(self) -> bool:
        cursor = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,))
        return bool((await cursor.fetchone())[0])


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
