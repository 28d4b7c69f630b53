"""Kernel receive stamps: how long bytes waited in the socket before the client read them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from onybench import arrival
from onybench.arrival import enable_receive_stamps, receive

pytestmark = pytest.mark.skipif(not arrival._KNOWN, reason="receive stamps: Linux x86_64/aarch64")


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    client.setblocking(False)
    yield client, server
    client.close()
    server.close()


def test_a_read_says_how_long_its_bytes_waited_in_the_kernel(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = tcp_pair
    assert enable_receive_stamps(client)
    server.sendall(b"first")
    time.sleep(0.03)  # a client too busy to read: the bytes wait in its socket
    data, waited_ns = receive(client, 1024)
    assert data == b"first"
    assert waited_ns is not None
    assert 30_000_000 <= waited_ns < 10_000_000_000
    with pytest.raises(BlockingIOError):  # nothing more yet
        receive(client, 1024)
    server.close()
    time.sleep(0.01)  # the FIN arrives
    assert receive(client, 1024) == (b"", None)


def test_without_stamps_a_read_has_no_wait(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    server.sendall(b"plain")
    time.sleep(0.01)
    assert receive(client, 1024) == (b"plain", None)
