"""The core's loop on its own (no tree): real signals, real pipes, real timers."""

from __future__ import annotations

import os
import signal
import time

from svtree.core.loop import Loop
from svtree.core.output import LIMIT, OWN_RESERVE, Stream


def test_an_error_while_logging_an_error_does_not_end_the_loop():
    def on_error(what, exc):
        raise RuntimeError("the log is broken too")

    loop = Loop(on_error)
    ran = []
    loop.call_later(0, lambda: 1 / 0)
    loop.call_later(0, lambda: ran.append(True))
    loop.run_once()
    assert ran == [True]
    assert loop.errors_unlogged == 1


def test_every_pending_signal_is_dispatched_once_even_if_its_byte_was_lost():
    loop = Loop(lambda what, exc: None)
    got = []
    old = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    try:
        loop.handle_signals({signal.SIGUSR1: got.append, signal.SIGUSR2: got.append})
        # Fill the wakeup socket as a burst of signals would, then signal: the byte is
        # dropped, the signal is not.
        loop._wake_w.setblocking(False)
        try:
            while True:
                loop._wake_w.send(b"\0")
        except BlockingIOError:
            pass
        for _ in range(50):
            os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        loop.run_once()
        assert got == [signal.SIGUSR1, signal.SIGUSR2]
    finally:
        signal.set_wakeup_fd(-1)
        for s, h in old.items():
            signal.signal(s, h)


def test_cancelled_timers_do_not_pile_up():
    loop = Loop(lambda what, exc: None)
    for i in range(1000):
        loop.call_later(1e6 + i, lambda: None).cancel()
    loop.call_later(0, lambda: None)
    loop.run_once()
    assert len(loop._heap) < 100


def test_a_reader_and_a_writer_on_one_fd():
    loop = Loop(lambda what, exc: None)
    a, b = __import__("socket").socketpair()
    seen = []
    loop.add_reader(a, lambda: seen.append(("r", a.recv(10))))
    loop.add_writer(a, lambda: (seen.append("w"), loop.remove_writer(a)))
    b.send(b"x")
    loop.run_once()
    assert ("r", b"x") in seen and "w" in seen
    loop.remove_reader(a)
    assert loop.sel.get_map().get(a.fileno()) is None
    a.close()
    b.close()


def test_a_stream_never_blocks_and_keeps_room_for_its_own_lines():
    r, w = os.pipe()
    loop = Loop(lambda what, exc: None)
    try:
        stream = Stream(loop, w)
        assert stream.writer.kind == "private"
        assert os.get_blocking(w)  # the shared description stays blocking
        t0 = time.monotonic()
        for _ in range(LIMIT // 1000 + 100):
            stream.put(b"x" * 999 + b"\n")  # service output, more than the pipe holds
        assert stream.full()
        kept = sum(stream.put_own(b"y" * 99 + b"\n") for _ in range(OWN_RESERVE // 100 + 50))
        assert kept == OWN_RESERVE // 100 and stream.dropped == 50
        assert time.monotonic() - t0 < 1.0
        reported = []
        stream.on_dropped = reported.append
        os.set_blocking(r, False)
        while True:  # the reader drains: what svtree held goes out, in order
            try:
                if not os.read(r, 1 << 20):
                    break
            except BlockingIOError:
                if not stream.chunks:
                    break
                stream.flush()
        assert reported == [50] and stream.size == 0
    finally:
        os.close(r)
        os.close(w)
