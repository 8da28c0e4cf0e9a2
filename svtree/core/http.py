"""The optional HTTP endpoint (`svtree run --http ADDR:PORT`, `http` in svtree.toml):
read-only probes and metrics, served from the core's own loop.

    GET /livez    200 while svtree runs and is not shutting down, else 503
    GET /readyz   200 when `ctl check` would pass, else 503 and the line `ctl check` prints
    GET /status   the JSON of `ctl status --json --resources` (with cpu_seconds, memory_bytes)
    GET /metrics  the Prometheus text format (svtree/core/metrics.py)

HEAD is answered like GET, without the body; any other method gets 405, any other
path 404. HTTP is parsed by h11 (sans-IO): this module only moves bytes, without ever
blocking, and keeps every client within bounds: MAX_CLIENTS at once (a newcomer evicts
the oldest one still sending its request, or is turned away), HEADER_LIMIT bytes of
request head, REQUEST_DEADLINE seconds to send it (also the idle time of a kept-alive
connection), REPLY_DEADLINE seconds to be answered and read the answer, and nothing
read past a request until it is answered (a client that pipelines or sends a body
waits in its own socket buffer). A slow or hostile client costs a slot, never the loop.

What the answers say comes from a `Provider` (the core): this module knows nothing of
services.
"""

from __future__ import annotations

import socket
from http import HTTPStatus
from typing import Callable, Protocol

import h11

from svtree import address
from svtree.core.metrics import CONTENT_TYPE as METRICS

MAX_CLIENTS = 64
MAX_TURNED_AWAY = 16  # clients told "too many clients" at once; more are just closed
HEADER_LIMIT = 8192  # bytes of request line and headers
READ_SIZE = 4096
REQUEST_DEADLINE = 5.0  # seconds to send a whole request head (or stay idle, kept alive)
REPLY_DEADLINE = 10.0  # seconds for the answer to be ready and read
LINGER = 1.0  # seconds a connection closed after an answer still reads (and drops) input
LINGER_BYTES = 65536
ACCEPT_BATCH = 64
LISTEN_BACKLOG = 128
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
ROUTES = ("/livez", "/readyz", "/status", "/metrics")


class Provider(Protocol):
    """What the endpoint asks the core. The two slow ones (they read /proc) answer
    through a callback, maybe later: the loop goes on meanwhile."""

    def livez(self) -> "str | None":
        """None while svtree runs and is not shutting down; else why not."""

    def readyz(self) -> "str | None":
        """None when every service wanted up is up and ready; else the first that is
        not, as one line (what `ctl check` prints)."""

    def status(self, reply: "Callable[[bytes], None]") -> None:
        """reply(the JSON of `ctl status --json`, as bytes)."""

    def metrics(self, reply: "Callable[[str], None]") -> None:
        """reply(the Prometheus text)."""


def _response(status: int, content_type: str, body: bytes, head: bool, conn: h11.Connection,
              extra: "tuple[tuple[str, str], ...]" = ()) -> bytes:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
    out = conn.send(h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase))
    if not head and body:
        out += conn.send(h11.Data(data=body))
    return out + conn.send(h11.EndOfMessage())


class Client:
    """One connection: reading a request head, answering it, writing the answer; again
    while the client keeps the connection alive."""

    def __init__(self, server: "Server", sock: socket.socket, registry: "dict[Client, None]") -> None:
        self.server = server
        self.registry = registry  # the server's set this client counts in
        registry[self] = None
        self.loop = server.loop
        self.sock = sock
        # The loop is given the fd, not the socket: a selector that looks up a socket it
        # does not hold formats the socket's repr for its KeyError (getsockname and
        # getpeername, each time), a third of a probe's cost.
        self.fd = sock.fileno()
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=HEADER_LIMIT)
        self.reading = True  # waiting for a request head (evictable)
        self.closed = False
        self.out = memoryview(b"")
        self.timer = self.loop.call_later(REQUEST_DEADLINE, self.close)
        self.loop.add_reader(self.fd, self.on_readable)

    # --- reading ----------------------------------------------------------------------

    def _recv(self) -> "bytes | None":
        """What the client sent (b"": it closed its side, or its connection failed);
        None when nothing is there now."""
        try:
            return self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def on_readable(self) -> None:
        data = self._recv()
        if data is None:
            return
        self.conn.receive_data(data)  # b"": the client closed its side
        self.next_request()

    def next_request(self) -> None:
        if not self.reading:  # answering, or closed, meanwhile
            return
        try:
            event = self.conn.next_event()
        except h11.RemoteProtocolError as e:
            self.fail(e.error_status_hint, str(e))
            return
        if event is h11.NEED_DATA:
            return  # the reader is on; the deadline runs
        if isinstance(event, h11.Request):
            self.reading = False
            self.loop.remove_reader(self.fd)
            self.set_timer(REPLY_DEADLINE)
            self.answer(event)
        else:  # ConnectionClosed (PAUSED cannot come while reading a head)
            self.close()

    def set_timer(self, delay: float) -> None:
        self.timer.cancel()
        self.timer = self.loop.call_later(delay, self.close)

    # --- answering --------------------------------------------------------------------

    def answer(self, request: h11.Request) -> None:
        method = request.method
        head = method == b"HEAD"
        path = request.target.split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            self.send(405, TEXT, b"only GET and HEAD\n", head, (("Allow", "GET, HEAD"),))
            return
        provider = self.server.provider
        if path == b"/livez":
            problem = provider.livez()
            self.send(503 if problem else 200, TEXT, f"{problem or 'ok'}\n".encode(), head)
        elif path == b"/readyz":
            problem = provider.readyz()
            self.send(503 if problem else 200, TEXT, f"{problem or 'ok'}\n".encode(), head)
        elif path == b"/status":
            provider.status(lambda body: self.send(200, JSON, body, head))
        elif path == b"/metrics":
            provider.metrics(lambda text: self.send(200, METRICS, text.encode(), head))
        else:
            body = ("not found; svtree serves " + ", ".join(ROUTES) + "\n").encode()
            self.send(404, TEXT, body, head)

    def turn_away(self) -> None:
        """Every slot is taken by a client being answered: say so, and hang up."""
        self.reading = False
        self.loop.remove_reader(self.fd)
        self.set_timer(LINGER)
        self.send(503, TEXT, b"too many clients\n", False, (("Connection", "close"),))

    def fail(self, status: int, why: str) -> None:
        """A request h11 refused (malformed, head too large): say so if the protocol
        still allows an answer, then hang up."""
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # h11 lets a server answer
            self.reading = False
            self.loop.remove_reader(self.fd)
            self.set_timer(REPLY_DEADLINE)
            self.send(status, TEXT, f"bad request: {why}\n".encode(), False, (("Connection", "close"),))
        else:
            self.close()

    def send(self, status: int, content_type: str, body: bytes, head: bool,
             extra: "tuple[tuple[str, str], ...]" = ()) -> None:
        if self.closed:  # it left (or overran its deadline) while the answer was made
            return
        try:
            self.out = memoryview(_response(status, content_type, body, head, self.conn, extra))
        except h11.LocalProtocolError:
            self.close()
            return
        self.flush()

    def flush(self) -> None:
        while self.out:
            try:
                n = self.sock.send(self.out, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(self.fd, self.flush)
                return
            except OSError:
                self.close()
                return
            self.out = self.out[n:]
        self.loop.remove_writer(self.fd)
        self.answered()

    def answered(self) -> None:
        """Keep the connection for the next request if both sides may, else hang up.
        A request body is never read: its connection is closed after the answer."""
        conn = self.conn
        if conn.their_state is h11.SEND_BODY:
            try:
                event = conn.next_event()  # a GET's empty body, already here
            except h11.RemoteProtocolError:
                event = None
            if not isinstance(event, h11.EndOfMessage):
                self.linger()
                return
        if conn.our_state is h11.MUST_CLOSE and conn.their_state in (h11.DONE, h11.MUST_CLOSE) \
                and not conn.trailing_data[0]:
            self.close()  # all it sent was read: nothing to reset the connection with
            return
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self.reading = True
            self.set_timer(REQUEST_DEADLINE)
            self.loop.add_reader(self.fd, self.on_readable)
            if conn.trailing_data[0]:
                # A pipelined request is in h11's buffer already: read it on the next
                # turn (not from here: a client's hundred pipelined requests would nest).
                self.loop.call_later(0, self.next_request)
        else:
            self.linger()

    def linger(self) -> None:
        """Close after an answer: send our end of the stream first, and drop what the
        client still sends for a moment. Closing with its input unread would reset the
        connection, and the client could lose the answer (a 431 for a head too large)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.reading = True  # evictable
        self.set_timer(LINGER)
        self.dropped = 0
        self.loop.add_reader(self.fd, self._drop_input)

    def _drop_input(self) -> None:
        data = self._recv()
        if data is None:
            return
        self.dropped += len(data)
        if not data or self.dropped > LINGER_BYTES:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.reading = False
        self.timer.cancel()
        self.loop.forget(self.fd)
        self.registry.pop(self, None)
        try:
            self.sock.close()
        except OSError:
            pass


class Server:
    def __init__(self, loop, provider: Provider, host: str, port: int, log) -> None:
        self.loop = loop
        self.provider = provider
        self.log = log
        self.clients: "dict[Client, None]" = {}  # an ordered set: oldest first
        self.turned_away: "dict[Client, None]" = {}
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        lsock = socket.socket(family, socket.SOCK_STREAM)
        try:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind((host, port))
            lsock.listen(LISTEN_BACKLOG)
            lsock.setblocking(False)
        except OSError:
            lsock.close()
            raise
        self.lsock = lsock
        self.host, self.port = host, lsock.getsockname()[1]
        loop.add_reader(lsock.fileno(), self.accept)

    @property
    def address(self) -> str:
        return address.show(self.host, self.port)

    def accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.loop.accept_failed(self.log, "http accept", self.lsock.fileno(), self.accept, e)
                return
            sock.setblocking(False)
            if len(self.clients) >= MAX_CLIENTS and not self._evict():
                if len(self.turned_away) < MAX_TURNED_AWAY:
                    Client(self, sock, self.turned_away).turn_away()
                else:
                    sock.close()
                continue
            # Its request is usually here already: read it now rather than on the
            # next turn of the loop.
            Client(self, sock, self.clients).on_readable()

    def _evict(self) -> bool:
        """Full: the oldest client still sending a request head (or idle between two
        requests) makes room; those being answered keep theirs (their deadline is short)."""
        for client in self.clients:
            if client.reading:
                client.close()
                return True
        return False

    def close(self) -> None:
        for client in [*self.clients, *self.turned_away]:
            client.close()
        self.loop.forget(self.lsock.fileno())
        self.lsock.close()


def start(loop, provider: Provider, listen: str, log) -> "Server | None":
    """Listen on "ADDR:PORT" (already checked by svtree/address.py); None, with an
    error logged, when it cannot (svtree runs on without it, as without a control socket)."""
    host, port = address.parse(listen)
    try:
        server = Server(loop, provider, host, port, log)
    except OSError as e:
        log.error("http_unavailable", address=listen, error=e.strerror or str(e))
        return None
    log.info("http_listening", address=server.address)
    return server
