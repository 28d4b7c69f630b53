"""How long received bytes waited in the kernel before the client read them (Linux).

A chunk is stamped when the client reads it; a busy client reads late, and its stamps
are late by as much. Linux can say exactly how late: with software receive timestamps
on (``SO_TIMESTAMPING``), each ``recvmsg`` on a TCP socket also returns when the kernel
received the last of the bytes it hands over. The client's health verdict uses that
wait where it has it, instead of inferring the delay from its event loop's lag.

    if enable_receive_stamps(sock):            # once, on a plain TCP socket
        data, waited_ns = receive(sock, 65536)  # waited_ns None when the kernel gave none

Elsewhere (other systems, other architectures, where setting the option fails) it is
off and the caller reads as usual.
"""

from __future__ import annotations

import platform
import socket
import struct
import sys
import time

__all__ = ["enable_receive_stamps", "receive"]

# <asm-generic/socket.h>: SO_TIMESTAMPING(_OLD), the same number as its control message.
# Other architectures (alpha, mips, parisc, sparc) number it differently, and 32-bit
# ones pack the times in 32 bits: only these are known to match.
_SO_TIMESTAMPING = 37
_KNOWN = sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")
# SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE: stamp on receipt, report it.
_RX_SOFTWARE_STAMPS = 0x8 | 0x10
# Three struct timespec (64-bit seconds and nanoseconds); the software stamp is the first.
_TIMESPECS = struct.Struct("qq")
_ANCILLARY_SIZE = socket.CMSG_SPACE(48) if _KNOWN else 0


def enable_receive_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp what `sock` receives; whether it will."""
    if not _KNOWN:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPING, _RX_SOFTWARE_STAMPS)
    except OSError:
        return False
    return True


def receive(sock: socket.socket, size: int) -> tuple[bytes, int | None]:
    """Up to `size` bytes from `sock` (non-blocking: BlockingIOError when none), and how
    many ns the last of them had waited in the kernel; None when no stamp came (EOF)."""
    data, ancillary, _, _ = sock.recvmsg(size, _ANCILLARY_SIZE)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPING and len(payload) >= 16:
            seconds, nanoseconds = _TIMESPECS.unpack_from(payload)
            if seconds:
                # The kernel's stamp is on the wall clock (CLOCK_REALTIME).
                return data, max(time.time_ns() - (seconds * 1_000_000_000 + nanoseconds), 0)
    return data, None
