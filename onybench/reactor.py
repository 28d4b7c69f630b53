"""Many sockets read by one trio task, through an epoll set of its own (Linux).

Why: trio wakes one task per readable socket. Each wake-up re-arms the socket in trio's
epoll (one ``epoll_ctl`` a read: trio registers one-shot), reschedules the task and
resumes its chain of coroutine frames: some 10-15 µs of CPU a read on a small VM, more
than the read and the decoding together. A streaming body has nothing to do between
two reads but hand the bytes on, so the transport registers its plain-TCP bodies here
instead: their sockets stay registered (level-triggered) in one epoll set, whose own
descriptor is the only thing trio waits on, and one task reads every socket the set
reports, calling each one's callback right after its read. The body's task sleeps
until its body has ended, failed, or the task is cancelled.

    reactor = Reactor()                    # one per transport, so per trio run
    reactor.watch(fd, on_readable)         # on_readable() runs in the reactor's task
    reactor.unwatch(fd)                    # before the socket is closed, always

The reactor's task is a trio system task, started at the first `watch`: it lives as
long as the run (or until `close`). A callback must not raise: it is the watcher's
job to hand its errors to its own task (the transport's bodies do).
"""

from __future__ import annotations

import select
from collections.abc import Callable

import trio

__all__ = ["Reactor", "reactor_available"]


def reactor_available() -> bool:
    """Whether this platform has epoll, which the reactor is built on."""
    return hasattr(select, "epoll")


class Reactor:
    """Sockets watched for reading by one task; see the module doc."""

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None
        self._watchers: dict[int, Callable[[], None]] = {}
        self._closing = False
        self.task: trio.lowlevel.Task | None = None  # the reading task, once started

    def watch(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Call `on_readable()` whenever `fd` is readable, until `unwatch(fd)`.

        Must be called inside the trio run that all watches of this reactor share."""
        if self._closing:
            raise RuntimeError("the reactor is closed")
        if self._epoll is None:
            self._epoll = select.epoll()
            self.task = trio.lowlevel.spawn_system_task(
                self._run, self._epoll, name="onybench reactor"
            )
        self._epoll.register(fd, select.EPOLLIN)
        self._watchers[fd] = on_readable

    def unwatch(self, fd: int) -> None:
        """Stop watching `fd` (before it is closed: a closed descriptor's number is
        soon reused)."""
        del self._watchers[fd]
        assert self._epoll is not None
        self._epoll.unregister(fd)
        if self._closing and not self._watchers:
            self._close_epoll()

    @property
    def closing(self) -> bool:
        """Whether `close` was called: no new watches."""
        return self._closing

    def close(self) -> None:
        """Stop the reactor's task and free its epoll set, now or once nothing is watched."""
        self._closing = True
        if not self._watchers:
            self._close_epoll()

    def _close_epoll(self) -> None:
        epoll, self._epoll = self._epoll, None
        if epoll is not None:
            # Wakes the task blocked on it with ClosedResourceError, then closes it.
            trio.lowlevel.notify_closing(epoll)
            epoll.close()

    async def _run(self, epoll: select.epoll) -> None:
        watchers = self._watchers
        poll = epoll.poll
        try:
            # Closed after `close` by the last unwatch, which may come at any point: before
            # this task first runs, during a pass, or between a wake-up and the pass (a
            # cancelled body's abort).
            while not epoll.closed:
                await trio.lowlevel.wait_readable(epoll)
                if epoll.closed:
                    return
                # Level-triggered: whatever one pass leaves unread is reported again.
                for fd, _ in poll(0):
                    on_readable = watchers.get(fd)
                    if on_readable is not None:  # unwatched earlier in this pass
                        on_readable()
        except trio.ClosedResourceError:
            return
