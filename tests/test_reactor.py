"""The reactor: sockets watched for reading by one task, through an epoll set of its own."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from onybench.reactor import Reactor, reactor_available

pytestmark = pytest.mark.skipif(not reactor_available(), reason="the reactor needs epoll")


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    b.setblocking(False)
    return a, b


async def test_each_watched_socket_calls_its_own_callback_when_readable() -> None:
    reactor = Reactor()
    (a1, b1), (a2, b2) = pair(), pair()
    got: list[tuple[str, bytes]] = []
    both = trio.Event()

    def reader(name: str, sock: socket.socket) -> None:
        got.append((name, sock.recv(100)))
        if len(got) == 3:
            both.set()

    reactor.watch(b1.fileno(), lambda: reader("one", b1))
    reactor.watch(b2.fileno(), lambda: reader("two", b2))
    a2.send(b"x")
    a1.send(b"y")
    await trio.testing.wait_all_tasks_blocked()
    a1.send(b"z")
    with trio.fail_after(5):
        await both.wait()
    reactor.unwatch(b1.fileno())
    reactor.unwatch(b2.fileno())
    a1.send(b"unread")  # no longer watched: no callback
    await trio.testing.wait_all_tasks_blocked()
    reactor.close()
    for s in (a1, b1, a2, b2):
        s.close()

    assert sorted(got[:2]) == [("one", b"y"), ("two", b"x")]
    assert got[2] == ("one", b"z")
    assert len(got) == 3


async def test_bytes_a_callback_leaves_unread_are_reported_again() -> None:
    # Level-triggered: a callback may read only part of what is there.
    reactor = Reactor()
    a, b = pair()
    got: list[bytes] = []
    done = trio.Event()

    def read_one_byte() -> None:
        got.append(b.recv(1))
        if len(got) == 3:
            reactor.unwatch(b.fileno())
            done.set()

    reactor.watch(b.fileno(), read_one_byte)
    a.send(b"abc")
    with trio.fail_after(5):
        await done.wait()
    reactor.close()
    a.close()
    b.close()
    assert got == [b"a", b"b", b"c"]


async def test_closing_stops_the_task_now_or_once_the_last_socket_is_unwatched() -> None:
    reactor = Reactor()
    a, b = pair()
    reactor.watch(b.fileno(), lambda: None)
    epoll = reactor._epoll
    assert epoll is not None
    reactor.close()
    assert not epoll.closed  # a body still streams: it keeps being read
    with pytest.raises(RuntimeError, match="closed"):
        reactor.watch(a.fileno(), lambda: None)
    reactor.unwatch(b.fileno())
    assert epoll.closed
    await trio.testing.wait_all_tasks_blocked()
    assert reactor.task is not None
    assert reactor.task.coro.cr_frame is None  # the reading task has returned
    a.close()
    b.close()


async def test_an_epoll_closed_between_the_wake_up_and_the_pass_ends_the_task_quietly() -> None:
    # The transport is closed while a body streams; the body's deadline then fires, and its
    # abort unwatches the last socket after trio's poll woke the reactor but before it ran.
    reactor = Reactor()
    a, b = pair()
    a.send(b"unread")  # readable from the start: the reactor is woken at once
    reactor.watch(b.fileno(), lambda: None)
    reactor.close()

    def unwatch(_: object) -> trio.lowlevel.Abort:
        reactor.unwatch(b.fileno())
        return trio.lowlevel.Abort.SUCCEEDED

    with trio.move_on_after(0.05):
        await trio.lowlevel.wait_task_rescheduled(unwatch)
    await trio.sleep(0.05)  # the run would have crashed here
    assert reactor.task is not None
    assert reactor.task.coro.cr_frame is None
    a.close()
    b.close()
