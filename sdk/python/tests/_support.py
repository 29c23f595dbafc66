"""Test helpers: a real ``nodai serve`` process, a recording HTTP receiver, waiting on conditions.

Nothing here sleeps and hopes: every wait polls a condition until a deadline
and fails with what it last saw.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[3]
ADMIN_TOKEN = "sdk-tests-admin-token-0123456789"

T = TypeVar("T")


def unique(prefix: str) -> str:
    """A fresh id matching ``[a-z0-9_-]``, so tests sharing one server never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_until(
    probe: Callable[[], Optional[T]],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something other than None (or False); fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- the server -------------------------------------------------------------


@dataclass
class ServerProcess:
    process: "subprocess.Popen[bytes]"
    base_url: str
    admin_token: str
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then wait for a clean exit; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise AssertionError("nodai did not stop within 30 s of SIGTERM:\n" + self.log()[-4000:])
        return self.process.returncode


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LISTENING = re.compile(r"nodai listening addr=(\S+)")


def nodai_binary() -> Path:
    return Path(os.environ.get("NODAI_BIN") or REPO / "target" / "debug" / "nodai")


def start_server(workdir: Path, *, startup_timeout: float = 60.0) -> ServerProcess:
    """Start ``nodai serve`` on a port the OS picks; return once ``/readyz`` is 200."""
    binary = nodai_binary()
    if not binary.exists():
        raise AssertionError(
            f"no nodai binary at {binary}: build it (cargo build) or set NODAI_BIN"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "server.log"
    # The server's own NODAI_* settings come from here only, not from the caller's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODAI_")}
    env.update(
        NODAI_ADMIN_TOKEN=ADMIN_TOKEN,
        NODAI_WEBHOOK_ALLOW_PRIVATE="1",
        NODAI_WEBHOOK_RETRY_SCHEDULE="1s,1s,1s",
        NODAI_LOG="info",
        NO_COLOR="1",
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(workdir / "data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    def read_log() -> str:
        return _ANSI.sub("", log_path.read_text(errors="replace"))

    def bound_addr() -> Optional[str]:
        if process.poll() is not None:
            raise AssertionError(f"nodai exited with {process.returncode}:\n{read_log()[-4000:]}")
        match = _LISTENING.search(read_log())
        return match.group(1) if match else None

    try:
        addr = wait_until(bound_addr, timeout=startup_timeout, what="nodai to log its address")
        base_url = f"http://{addr}"

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"nodai exited with {process.returncode}:\n{read_log()[-4000:]}")
            try:
                return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=startup_timeout, what="/readyz to answer 200")
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        raise
    return ServerProcess(process, base_url, ADMIN_TOKEN, workdir / "data", log_path)


# --- a recording HTTP endpoint (webhook receiver, fake upstream) ------------


@dataclass
class Captured:
    path: str
    headers: Dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on a free loopback port that records every POST.

    ``status`` and ``response`` say what it answers; tests change them to make
    deliveries fail and then succeed. ``response`` is sent as JSON, or as is
    when it is ``bytes`` (with ``content_type``); ``cut_short`` announces a
    longer body than it sends and hangs up, a stream that breaks off.
    """

    status: int = 200
    response: Any = None
    content_type: str = "application/json"
    cut_short: bool = False
    requests: List[Captured] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Optional[ThreadingHTTPServer] = None
    _thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        Captured(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status, response = receiver.status, receiver.response
                    content_type, cut_short = receiver.content_type, receiver.cut_short
                if isinstance(response, bytes):
                    payload = response
                else:
                    payload = b"" if response is None else json.dumps(response).encode()
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload) + (1000 if cut_short else 0)))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def set(
        self,
        status: int,
        response: Any = None,
        *,
        content_type: str = "application/json",
        cut_short: bool = False,
    ) -> None:
        with self._lock:
            self.status, self.response = status, response
            self.content_type, self.cut_short = content_type, cut_short

    def captured(self, predicate: Callable[[Captured], bool] = lambda c: True) -> List[Captured]:
        with self._lock:
            return [c for c in self.requests if predicate(c)]

    def wait_for(
        self,
        predicate: Callable[[Captured], bool],
        *,
        count: int = 1,
        timeout: float = 15.0,
    ) -> List[Captured]:
        def probe() -> Optional[List[Captured]]:
            found = self.captured(predicate)
            return found if len(found) >= count else None

        return wait_until(probe, timeout=timeout, what=f"{count} matching request(s) at {self.url}")


class CountingTransport(httpx.BaseTransport):
    """A real HTTP transport that also records each request it sends."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: List[Tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()
