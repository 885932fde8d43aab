"""The agent's end of one of its own processes that clones children for it (the
launcher, ``_launch``; the zygote, ``_zygote``): its pid, kept in ``_procs.FIXED`` (no
run's kill reaches it), and a ``SOCK_SEQPACKET`` socket. A request is one message with
descriptors attached (``SCM_RIGHTS``); the answer is the new child's pid as a 4-byte
integer, or a negative one where the clone was refused."""

from __future__ import annotations

import _socket as socket  # not socket.py: the zygote is forked with this loaded (_zygote)
import os
import struct

from . import _procs

ANSWER_WAIT = 2.0  # seconds: a helper that does not answer is given up


class Helper:
    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid, self.sock = pid, sock
        sock.settimeout(ANSWER_WAIT)
        _procs.FIXED.add(pid)

    def usable(self) -> bool:
        return self.pid in _procs.FIXED  # not reaped, not given up

    def ask(self, message: bytes, fds: tuple[int, ...]) -> int | None:
        """The pid of the child made for ``message`` with ``fds``, a child of the agent.
        None: not made (the agent does without); a helper that failed is given up for
        the sandbox's life."""
        try:
            rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))
            self.sock.sendmsg([message], [rights])
            answer = self.sock.recv(8)
        except OSError:  # gone, or hung (timeout): from now on, the agent does without
            self.close()
            return None
        pid = int.from_bytes(answer, "little", signed=True) if len(answer) == 4 else 0
        if pid <= 0:  # clone refused (out of pids, or a kernel without CLONE_PARENT)
            if len(answer) != 4:
                self.close()
            return None
        return pid

    def close(self) -> None:
        """Given up: killed (it could be hung) and left to the next reap; not killed once
        reaped (``_procs.note_exit`` forgets it: its pid may be another's by now)."""
        if self.pid in _procs.FIXED:
            _procs.FIXED.discard(self.pid)
            _procs.kill_each([self.pid])
        self.sock.close()


def keep_only(sock: int) -> None:
    """In a new helper: /dev/null as 0-2, its socket (descriptor ``sock``) as 3, every
    other descriptor closed: nothing of the host's streams, the channel or another
    helper's socket."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.dup2(sock, 3)
    os.closerange(4, 65536)
