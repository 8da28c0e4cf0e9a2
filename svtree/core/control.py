"""The control socket: `svtree ctl` requests, served inside the core's loop.

One JSON object per line each way. Every connection is non-blocking, has a deadline to
send its request and a size limit; peers are checked with SO_PEERCRED (root and
svtree's own uid only). A malformed, oversized, slow or abandoned request gets an error
or is dropped; none can block the loop, so supervision never waits on a client.
Replies go out from a buffer as the client reads them (`status` of thousands of
services is larger than a socket holds), within REPLY_DEADLINE.

A client is in one phase at a time, each with at most one timer: sending its request
(REQUEST_DEADLINE), waiting (`wait`, `--wait`, `reload` queued behind another reload;
its --timeout), reading the reply (REPLY_DEADLINE). When all MAX_CLIENTS slots are
taken, a newcomer evicts the oldest client still sending a request, else the oldest
slow reader of a reply, else the oldest queued `reload` (the reload itself still runs).
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import stat
import struct
import time

from svtree import paths, wire
from svtree.core import logreply
from svtree.core.logbuffer import LogBook
from svtree.core.logreply import LogsReply
from svtree.signames import parse_signal, signal_name
from svtree.states import DOWN_STATES, SATISFIED, UP_STATES

REQUEST_DEADLINE = 5.0  # seconds a client has to send one whole request
REPLY_DEADLINE = 5.0  # seconds a client has to read its whole reply
MAX_REPLY = 16 << 20  # bytes; a larger reply is replaced by an error
MAX_CLIENTS = 256
EXIT_GRACE = 2.0  # seconds PID 1 waits at exit for `shutdown --wait` clients to finish


class BadRequest(Exception):
    """A request whose fields have the wrong type or value; `usage` marks a usage error."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def request_timeout(req: dict) -> "float | None":
    """The request's `timeout` in seconds, or None; BadRequest unless finite and in range."""
    value = req.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise BadRequest(f"timeout must be a number of seconds, not {value!r}", usage=True)
    if value > wire.MAX_TIMEOUT:
        raise BadRequest(f"timeout must be at most {wire.MAX_TIMEOUT:g} s (leave it out to wait forever)",
                         usage=True)
    return float(value)


WAIT_STATES = {"up": UP_STATES, "ready": SATISFIED, "down": DOWN_STATES}


class Client:
    def __init__(self, server: "Server", sock: socket.socket, uid: int, pid: int) -> None:
        self.server = server
        self.sock = sock
        self.uid = uid
        self.pid = pid
        self.buf = b""
        self.done = False  # answered (the reply may still be going out)
        self.reading = True  # its request is not complete yet
        self.waiting: "str | None" = None  # "wait" or "reload" while it waits
        self.unsent: "memoryview | None" = None  # the part of the reply not sent yet
        self.timer = server.loop.call_later(REQUEST_DEADLINE, self.expire)

    def expire(self) -> None:
        self.reply({"ok": False, "error": "request not received in time"})

    def set_timer(self, delay: "float | None", callback) -> None:
        """The deadline of the phase the client enters now (None: none)."""
        self.timer.cancel()
        if delay is not None:
            self.timer = self.server.loop.call_later(delay, callback)

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.buf += data
        if b"\n" not in self.buf:
            if len(self.buf) > wire.MAX_REQUEST:
                self.reply({"ok": False, "error": f"request larger than {wire.MAX_REQUEST} bytes"})
            return
        line = self.buf.split(b"\n", 1)[0]
        self.buf = b""
        self.reading = False
        self.server.loop.remove_reader(self.sock)
        self.timer.cancel()
        if len(line) > wire.MAX_REQUEST:
            self.reply({"ok": False, "error": f"request larger than {wire.MAX_REQUEST} bytes"})
            return
        try:
            self.serve(line)
        except Exception as e:
            # The reader is off and the deadline cancelled: without this reply the
            # connection would stay open for ever (one fd leaked per bad request).
            self.server.log.warning("control_error", error=repr(e), pid=self.pid)
            self.reply({"ok": False, "error": f"internal error: {e!r}"})

    def serve(self, line: bytes) -> None:
        try:
            req = wire.decode(line)
        except (ValueError, RecursionError) as e:  # RecursionError: "[[[[..." nested deep
            self.reply({"ok": False, "error": f"malformed request: {e}"})
            return
        if req.get("v") != wire.PROTOCOL or isinstance(req.get("v"), bool):
            self.reply({"ok": False, "error": f"protocol {req.get('v')!r} not spoken here "
                                              f"(svtree speaks {wire.PROTOCOL})"})
            return
        try:
            self.server.handle(self, req)
        except BadRequest as e:
            self.reply({"ok": False, "error": str(e), **({"usage": True} if e.usage else {})})

    def reply(self, obj: dict) -> None:
        if self.done:
            return
        self.done = True
        self.reading = False
        self.waiting = None
        self.server.forget_waiter(self)
        data = wire.encode_line(obj)
        if len(data) > MAX_REPLY:
            data = wire.encode_line({"ok": False, "error": f"reply larger than {MAX_REPLY} bytes"})
        self.unsent = memoryview(data)
        loop = self.server.loop
        loop.remove_reader(self.sock)
        self.set_timer(REPLY_DEADLINE, self.close)
        self.send_reply()
        if self.unsent is not None:
            if not loop.running:  # svtree is exiting: no loop to wait for room
                self.close()
            else:
                loop.add_writer(self.sock, self.send_reply)

    def send_reply(self) -> None:
        while self.unsent:
            try:
                n = self.sock.send(self.unsent, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                break  # it hung up
            self.unsent = self.unsent[n:]
        self.close()

    def close(self) -> None:
        self.detach()
        try:
            self.sock.close()
        except OSError:
            pass

    def detach(self) -> socket.socket:
        """Leave the server's care (answered, no timer, no callbacks) and hand over the
        socket, open: `logs` streams its answer from core/logreply.py."""
        self.done = True
        self.reading = False
        self.waiting = None
        self.unsent = None
        self.timer.cancel()
        self.server.loop.forget(self.sock)
        self.server.forget(self)
        return self.sock


class Server:
    """`core` is used only through its interface (status_rows, view, check, want_up, ...);
    `reload(source, reply)` asks for a reload (core/reload.py's Reloader.request);
    `probes` gives status rows with CPU and memory (core/probes.py); `book` holds the
    services' last lines (None in `raw` output mode)."""

    def __init__(self, loop, log, core, reload, path: str, probes, book: "LogBook | None") -> None:
        self.loop = loop
        self.log = log
        self.core = core
        self.reload = reload
        self.path = path
        self.probes = probes
        self.book = book
        self.logs: "dict[LogsReply, None]" = {}  # `ctl logs` answers being streamed
        self.clients: "dict[Client, None]" = {}  # an ordered set: oldest first
        self.waiters: "list[tuple[Client, callable, float | None]]" = []
        self.lsock = self._listen(path, log)
        loop.add_reader(self.lsock, self.accept)
        core.subscribe(on_change=self.check_waiters)

    @staticmethod
    def _listen(path: str, log) -> socket.socket:
        directory = os.path.dirname(path) or "."
        name = os.path.basename(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.stat(directory)
        mode = stat.S_IMODE(st.st_mode)
        if mode != 0o700:
            # Make the directory private only when it is ours: owned by us, not a shared
            # sticky directory, and holding nothing but (a stale copy of) our socket.
            # `--socket /tmp/x.sock` or a socket beside other files must not take the
            # directory away from everyone else; the socket itself is still 0600 and
            # peers are still checked.
            ours = st.st_uid == os.getuid() and not mode & stat.S_ISVTX \
                and set(os.listdir(directory)) <= {name}
            if ours:
                os.chmod(directory, 0o700)
            else:
                log.warning("control_socket_dir_shared", directory=directory, mode=oct(mode),
                            note="left as it is; the socket is 0600")
        try:
            existing = os.lstat(path)
        except FileNotFoundError:
            existing = None
        if existing is not None and not stat.S_ISSOCK(existing.st_mode):
            # Never unlink what is not a socket: --socket pointing at a file by mistake.
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        # Non-blocking: a listener whose queue is full would hold a blocking connect for
        # ever; a unix socket answers a non-blocking one at once (EAGAIN when full).
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            probe.connect(path)
        except (BlockingIOError, InterruptedError):
            probe.close()
            raise OSError(errno.EADDRINUSE, f"another svtree listens on {path} (its queue is full)")
        except OSError:
            pass  # nobody listens: a stale socket file, or none
        else:
            probe.close()
            raise OSError(errno.EADDRINUSE, f"another svtree listens on {path}")
        probe.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            lsock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        lsock.listen(MAX_CLIENTS)
        lsock.setblocking(False)
        return lsock

    def close(self) -> None:
        self.loop.remove_reader(self.lsock)
        self.lsock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self.lsock.accept()
            except BlockingIOError:
                return
            except OSError as e:
                self.loop.accept_failed(self.log, "accept", self.lsock, self.accept, e)
                return
            sock.setblocking(False)
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, _gid = struct.unpack("3i", creds)
            if uid not in (0, os.getuid()):
                self.log.warning("control_refused", reason="uid not allowed", uid=uid, pid=pid)
                try:
                    sock.send(wire.encode_line({"ok": False, "error": "permission denied"}),
                              socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
                except OSError:
                    pass
                sock.close()
                continue
            if len(self.clients) >= MAX_CLIENTS and not self._evict_a_slow_client():
                # Every slot holds a legitimate wait: tell the newcomer instead of
                # hanging up on it without a word.
                try:
                    sock.send(wire.encode_line({"ok": False, "error": f"too many clients ({MAX_CLIENTS})"}),
                              socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
                except OSError:
                    pass
                sock.close()
                continue
            client = Client(self, sock, uid, pid)
            self.clients[client] = None
            self.loop.add_reader(sock, client.on_readable)

    def _evict_a_slow_client(self) -> bool:
        """Full: the oldest client still sending its request makes room (otherwise
        clients that connect and send nothing would lock everyone out until their
        deadline, over and over); else the oldest one slow to read its reply; else the
        oldest queued `reload` (all queued reloads are one reload: it still runs)."""
        for client in self.clients:
            if client.reading:
                client.reply({"ok": False, "error": "dropped: too many clients still sending a request"})
                return True
        for client in self.clients:
            if client.unsent is not None:
                client.close()
                return True
        for client in self.clients:
            if client.waiting == "reload":
                client.reply({"ok": False, "error": f"dropped: too many clients ({MAX_CLIENTS}); "
                                                    "the queued reload still runs"})
                return True
        return False

    def forget(self, client: Client) -> None:
        self.clients.pop(client, None)
        self.forget_waiter(client)

    def forget_waiter(self, client: Client) -> None:
        if any(w[0] is client for w in self.waiters):
            self.waiters = [w for w in self.waiters if w[0] is not client]

    # --- verbs --------------------------------------------------------------------------

    def handle(self, client: Client, req: dict) -> None:
        """Check the fields every verb shares, then run the verb. Wrong types raise
        BadRequest (answered as an error by the client's `serve`)."""
        verb = req.get("verb")
        if not isinstance(verb, str) or verb not in wire.VERBS:
            raise BadRequest(f"unknown verb {verb!r}", usage=True)
        names = req.get("names")
        if names is None:
            names = []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadRequest("names must be a list of strings", usage=True)
        unknown = [n for n in names if self.core.view(n) is None]
        if unknown and verb not in wire.NO_NAMES:
            client.reply({"ok": False, "error": f'no service named "{unknown[0]}"'})
            return
        getattr(self, f"verb_{verb}")(client, req, names)

    def verb_status(self, client, req, names) -> None:
        if not req.get("resources"):
            client.reply({"ok": True, "services": self.core.status_rows(names, time.monotonic())})
            return
        # The rows are taken now; their CPU and memory when the sample is there (at once,
        # or after a scan of /proc a slice per turn): a client that leaves meanwhile is
        # not answered (`reply` of a closed client does nothing).
        self.probes.rows(names, lambda rows: client.reply({"ok": True, "services": rows}))

    def verb_logs(self, client, req, names) -> None:
        if self.book is None:
            client.reply({"ok": False, "error": 'output is "raw": service output goes straight to '
                                                "svtree's stdout and stderr and is not kept "
                                                '(output = "prefix" keeps it for logs)'})
            return
        if not self.book.max_lines:
            client.reply({"ok": False, "error": "log_buffer = 0 in svtree.toml: no lines are kept"})
            return
        try:
            last, follow = logreply.validate(req)
        except ValueError as e:
            raise BadRequest(str(e), usage=True) from None
        if len(self.logs) >= logreply.MAX_CLIENTS:
            client.reply({"ok": False, "error": f"too many logs clients ({logreply.MAX_CLIENTS})"})
            return
        reply = LogsReply(self.loop, client.detach(), self.book, names, last, follow,
                          lambda r: self.logs.pop(r, None))
        if not reply.closed:
            self.logs[reply] = None

    def _change(self, client, req, names, action, until) -> None:
        core = self.core
        timeout = request_timeout(req)
        if core.shutting_down:
            client.reply({"ok": False, "error": "svtree is shutting down"})
            return
        # Each report has a higher number than the last (for the record's whole life, and
        # a reload's replacement goes on from there): while a service's number is the one
        # it had when the request came in, nothing has happened yet, and a `failed` there
        # is old news.
        before = {n: core.view(n) for n in names}
        for n in names:
            action(n)
        if not req.get("wait"):
            client.reply({"ok": True})
            return

        def settled() -> "bool | str":
            for n in names:
                now = core.view(n)
                if now is None:
                    continue  # removed by a reload meanwhile
                verdict = until(now, before[n], now.seq > before[n].seq)
                if verdict is not True:
                    return verdict
            return True

        self.add_waiter(client, settled, timeout)

    def verb_start(self, client, req, names) -> None:
        def until(v, before, news):
            if v.state in SATISFIED:
                return True
            if news and (v.state.value == "failed" or (v.gave_up and v.state.value == "down")):
                return f"{v.name} failed"
            return False
        self._change(client, req, names, self.core.want_up, until)

    def verb_stop(self, client, req, names) -> None:
        self._change(client, req, names, self.core.want_down,
                     lambda v, before, news: v.state in DOWN_STATES)

    def verb_restart(self, client, req, names) -> None:
        def until(v, before, news):
            if not news:
                return False
            if v.state.value == "failed":
                return f"{v.name} failed"
            moved = v.restarts > before.restarts or (v.pid and v.pid != before.pid)
            return bool(moved) and v.state in SATISFIED
        self._change(client, req, names, self.core.restart, until)

    def verb_signal(self, client, req, names) -> None:
        value = req.get("signal", "")
        if not isinstance(value, (str, int)):
            raise BadRequest(f"signal must be a name or a number, not {value!r}", usage=True)
        try:
            sig = parse_signal(value)
        except ValueError as e:
            raise BadRequest(str(e), usage=True) from None
        missing = [n for n in names if not self.core.view(n).pid]
        for n in names:
            self.core.signal(n, sig)
        if missing:
            client.reply({"ok": False, "error": f"{missing[0]} is not running; no SIG{signal_name(sig)} sent to it"})
        else:
            client.reply({"ok": True})

    def verb_wait(self, client, req, names) -> None:
        mode = req.get("mode")
        if not isinstance(mode, str) or mode not in WAIT_STATES:
            raise BadRequest("wait needs --up, --ready or --down", usage=True)
        timeout = request_timeout(req)
        states = WAIT_STATES[mode]
        core = self.core

        def settled():
            views = (core.view(n) for n in names)
            return all(v.state in states for v in views if v is not None)

        self.add_waiter(client, settled, timeout)

    def verb_check(self, client, req, names) -> None:
        problem = self.core.check()
        client.reply({"ok": problem is None, "error": problem} if problem else {"ok": True})

    def verb_reload(self, client, req, names) -> None:
        self.reload("ctl", client.reply)
        if not client.done:
            # Queued behind a reload still being applied: it waits like `wait` does (a
            # hang-up forgets it), and can be evicted when every slot is taken.
            self._waiting(client, "reload", lambda: False, None)

    def verb_shutdown(self, client, req, names) -> None:
        if req.get("wait"):
            self.core.spare(client.pid)
            self._waiting(client, "wait", lambda: False, None)
        else:
            client.reply({"ok": True})
        self.core.begin_shutdown("ctl shutdown")

    # --- waiting ------------------------------------------------------------------------

    def add_waiter(self, client, settled, timeout) -> None:
        verdict = settled()
        if verdict is not False:
            client.reply({"ok": True} if verdict is True else {"ok": False, "error": verdict})
            return
        self._waiting(client, "wait", settled, timeout)

    def _waiting(self, client, kind: str, settled, timeout: "float | None") -> None:
        client.waiting = kind
        self.waiters.append((client, settled, None))

        def expire():
            client.reply({"ok": False, "error": f"timed out after {timeout:g} s", "timeout": True})

        client.set_timer(timeout, expire)  # cancelled when the client is answered or leaves
        # A waiting client that hangs up is forgotten (EOF on its socket).
        self.loop.add_reader(client.sock, lambda: self._hangup(client))

    def _hangup(self, client) -> None:
        try:
            data = client.sock.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            client.close()

    def check_waiters(self) -> None:
        for entry in list(self.waiters):
            client, settled, _ = entry
            if client.done:
                continue
            verdict = settled()
            if verdict is not False:
                client.reply({"ok": True} if verdict is True else {"ok": False, "error": verdict})

    def on_exit(self, is_pid1: bool) -> None:
        """svtree is exiting: every waiting client gets its answer (`shutdown --wait`
        clients that run in our PID namespace get a moment to read it)."""
        for logs in list(self.logs):
            logs.end("svtree exits")
        spared = []
        for client, _, _ in list(self.waiters):
            if client.waiting == "reload":
                client.reply({"ok": False, "error": "svtree is shutting down; reload ignored"})
                continue
            client.reply({"ok": True, "exiting": True})
            if client.pid:
                spared.append(client.pid)
        if is_pid1 and spared:
            self._let_finish(spared)

    def _let_finish(self, pids: "list[int]") -> None:
        """When PID 1 exits the kernel kills everything left in its namespace, so a
        `shutdown --wait` client in the container (`docker exec ... ctl shutdown --wait`)
        would die before it reads its answer. Wait, a little, for those to exit."""
        fds = []
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except OSError:
                pass  # already gone (or no pidfd: then it takes its chance)
        deadline = time.monotonic() + EXIT_GRACE
        try:
            poller = select.poll()
            for fd in fds:
                poller.register(fd, select.POLLIN)
            left = len(fds)
            while left:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                for fd, _ in poller.poll(wait * 1000):
                    poller.unregister(fd)
                    left -= 1
        finally:
            for fd in fds:
                os.close(fd)


def start(loop, log, core, reload, socket_path: "str | None", probes,
          book: "LogBook | None") -> "Server | None":
    path = paths.socket_path(socket_path)
    try:
        return Server(loop, log, core, reload, path, probes, book)
    except OSError as e:
        log.error("control_unavailable", socket=path, error=e.strerror or str(e))
        return None
