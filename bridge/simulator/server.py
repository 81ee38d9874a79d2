"""``Simulator``: the 1C web server on loopback (``http.server`` in a background thread).

Owns the HTTP plumbing around ``endpoints.ODataService``: Basic auth decoded as UTF-8 (a Cyrillic
login works; wrong credentials give 401), IIS's query-string limit (an HTML 404.15 page past
``max_query_bytes``), 411 for a body-less POST/PATCH without ``Content-Length``, mounted routes
(``add_route`` — the SOAP service lives at ``/ut11/ws/LoyaltyBridge.1cws``), request accounting in
the store, and applying ``faults.Faults`` (errors, HTML pages, BOM, truncation, delays, resets,
hangs after a write). Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

import base64
import binascii
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from bridge.simulator.endpoints import JSON_TYPE, ODataService, Reply, classify, odata_error
from bridge.simulator.faults import Fault, FaultRequest, Faults
from bridge.simulator.store import SimStore

RouteHandler = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]

IIS_404_15 = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" \
"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head>
<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>
<title>IIS 10.0 Detailed Error - 404.15 - Not Found</title></head>
<body><div id="content"><div class="content-container"><h3>HTTP Error 404.15 - Not Found</h3>
<h4>The request filtering module is configured to deny a request where the query string is too long.</h4>
</div></div></body></html>
"""
HTML_ERROR_200 = """<!DOCTYPE html><html><head><meta charset="utf-8"/>
<title>Ошибка</title></head><body><h1>Ошибка при выполнении операции с информационной базой</h1>
<p>Сеанс работы завершен администратором. Повторите попытку позже.</p></body></html>
"""
HTML_503 = """<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN"><html><head>
<title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1>
<p>The server is temporarily unable to service your request.</p></body></html>
"""
NOT_FOUND = "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n"
_HEADER_SAFE = ":/?#[]@!$&'()*+,;= "
BODY_METHODS = frozenset({"POST", "PATCH", "MERGE", "PUT"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    simulator: Simulator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reset_sockets: set[int] = set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, reset, refused our certificate) is part of the game.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        if id(request) in self.reset_sockets:
            # SO_LINGER 0 + close (no shutdown/FIN first): the peer sees a TCP reset.
            self.reset_sockets.discard(id(request))
            request.close()
            return
        super().shutdown_request(request)


class Simulator:
    """A 1C:UT 11 web publication on ``127.0.0.1``: OData at ``odata_url``, extra routes mounted.

    Args:
        store: the infobase (a fresh empty ``SimStore`` when omitted).
        username, password: the 1C user for HTTP Basic auth (UTF-8); ``auth=False`` disables it.
        max_query_bytes: IIS's query-string limit; longer queries get an HTML 404.15 page.
        infobase: the publication name in the URL path.
        host, port: where to listen (default ``127.0.0.1`` and a free port).
        skip_cost: seconds of delay per 1000 rows of ``$skip`` (0: off), to make deep paging hurt.
        tls: a server-side ``ssl.SSLContext`` (its certificate loaded) to serve HTTPS instead of HTTP.
    """

    def __init__(
        self,
        store: SimStore | None = None,
        *,
        username: str = "Администратор",
        password: str = "пароль",
        max_query_bytes: int = 2048,
        infobase: str = "ut11",
        auth: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        skip_cost: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.store = store if store is not None else SimStore()
        self.username = username
        self.password = password
        self.max_query_bytes = max_query_bytes
        self.infobase = infobase
        self.auth_required = auth
        self.host = host
        self._port = port
        self.tls = tls
        self.faults = Faults()
        self.odata = ODataService(self.store, lambda: self.odata_url + "/", skip_cost=skip_cost)
        self._routes: list[tuple[str, RouteHandler, bool]] = []
        self._working = 0  # requests read whose effects have not happened yet (see ``wait_settled``)
        self.most_at_once = 0  # the most requests it was working on at one time (concurrent clients)
        self._settled = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Listen (a free loopback port by default) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self.faults.released.clear()
        server = _Server((self.host, self._port), _Handler)
        if self.tls is not None:
            # The handshake waits for the handler's first read, in its own thread: a client that
            # stalls or refuses the certificate must not block the accept loop.
            listening = server.socket
            server.socket = self.tls.wrap_socket(listening, server_side=True, do_handshake_on_connect=False)
        server.simulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="1c-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging handlers are released."""
        self.faults.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def wait_settled(self, timeout: float = 10.0) -> bool:
        """Wait until every request received so far has had its effects (a ``delay`` fault's sleep
        is over); False if ``timeout`` passed first. What "time passes" means to a test that moves
        the bridge's clock forward: 1C has finished the requests the bridge gave up waiting for."""
        with self._settled:
            return self._settled.wait_for(lambda: self._working == 0, timeout)

    def _work(self, step: int) -> None:
        with self._settled:
            self._working += step
            self.most_at_once = max(self.most_at_once, self._working)
            if self._working == 0:
                self._settled.notify_all()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/ut11`` — the publication root (``https://`` with ``tls``)."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/{self.infobase}"

    @property
    def odata_url(self) -> str:
        """``http://127.0.0.1:PORT/ut11/odata/standard.odata`` (no trailing slash)."""
        return f"{self.base_url}/odata/standard.odata"

    @property
    def auth(self) -> tuple[bytes, bytes]:
        """Credentials ready for ``requests`` (bytes: requests would encode ``str`` as latin-1)."""
        return self.username.encode(), self.password.encode()

    def add_route(self, path_prefix: str, handler: RouteHandler, *, auth: bool = True) -> None:
        """Mount ``handler(method, path, headers, body) -> (status, headers, body)`` under a prefix.

        ``path`` is the raw request target (with ``?query``). Auth, the query limit and faults
        apply as for OData unless ``auth=False``.
        """
        self._routes.append((path_prefix, handler, auth))

    def route_for(self, path: str) -> tuple[RouteHandler, bool] | None:
        for prefix, handler, auth in self._routes:
            if path.startswith(prefix):
                return handler, auth
        return None

    def check_auth(self, header: str | None) -> bool:
        if not self.auth_required:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        return bool(sep) and user == self.username and password == self.password


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle + delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_MERGE(self) -> None:
        self._dispatch("MERGE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- the pipeline ----------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        sim = self.server.simulator
        sim._work(1)
        done = [False]

        def settle() -> None:  # the request's effects have happened (or it has none)
            if not done[0]:
                done[0] = True
                sim._work(-1)

        try:
            self._dispatch_settling(method, sim, settle)
        finally:
            settle()

    def _dispatch_settling(self, method: str, sim: Simulator, settle: Callable[[], None]) -> None:
        headers = {k: v for k, v in self.headers.items()}
        length = self.headers.get("Content-Length")
        raw = urlsplit(self.path)
        if method in BODY_METHODS and length is None:
            sim.store.record_request(method, "length_required", unquote(raw.path), unquote(raw.query))
            self.close_connection = True
            self._send(Reply(411, {"Content-Type": "text/html"}, b"<h1>Length Required</h1>"))
            return
        body = self.rfile.read(int(length)) if length else b""
        if length and len(body) < int(length):
            # The client went away mid-body (a killed process, a dropped link): like IIS, 1C never
            # sees an incomplete request. Nothing is recorded, nothing applied, nobody to answer.
            self.close_connection = True
            return
        if len(raw.query.encode()) > sim.max_query_bytes:
            sim.store.record_request(method, "too_long", unquote(raw.path), "")
            self._send(Reply(404, {"Content-Type": "text/html"}, IIS_404_15.encode()))
            return
        path, query_text = unquote(raw.path), unquote(raw.query)
        route = sim.route_for(path)
        needs_auth = route[1] if route else True
        if needs_auth and not sim.check_auth(headers.get("Authorization")):
            sim.store.record_request(method, "unauthorized", path, query_text)
            www = {"WWW-Authenticate": 'Basic realm="1C:Enterprise"', "Content-Type": "text/plain"}
            self._send(Reply(401, www, "Требуется авторизация".encode()))
            return
        query = dict(parse_qsl(raw.query, keep_blank_values=True))
        odata_root = f"/{sim.infobase}/odata/standard.odata"
        resource = path[len(odata_root) :].lstrip("/") if path.startswith(odata_root) else None
        kind = classify(method, resource, query) if resource is not None else "route" if route else "other"
        sim.store.record_request(method, kind, path, query_text)
        fault = sim.faults.pick(FaultRequest(method, path, query_text, headers, body))
        if fault is not None and self._fault_before(fault):
            return
        if route is not None:
            status, out_headers, out_body = route[0](method, self.path, headers, body)
            reply = Reply(status, dict(out_headers), out_body)
        elif resource is not None:
            try:
                reply = sim.odata.handle(method, resource, query, headers, body)
            except Exception as exc:  # a simulator bug must still look like 1C's 500
                reply = odata_error(500, f"Внутренняя ошибка симулятора: {exc!r}")
        else:
            reply = Reply(404, {"Content-Type": "text/html"}, NOT_FOUND.encode())
        settle()
        if fault is not None:
            self._fault_after(fault, reply)
            return
        self._send(reply)

    def _fault_before(self, fault: Fault) -> bool:
        """Apply a fault that replaces the answer; ``True`` when the request is done."""
        kind = fault.kind
        if kind == "delay":
            time.sleep(float(fault.param("seconds", 0.5)))
            return False
        if kind == "error500":
            message = fault.param("message", "Ошибка при выполнении операции: нарушение блокировки данных")
            self._send(odata_error(500, message))
        elif kind == "error503":
            self._send(Reply(503, {"Content-Type": "text/html"}, HTML_503.encode()))
        elif kind == "error429":
            retry = str(fault.param("retry_after", 1))
            reply = odata_error(429, "Слишком много запросов")
            reply.headers["Retry-After"] = retry
            self._send(reply)
        elif kind == "html200":
            self._send(Reply(200, {"Content-Type": "text/html; charset=utf-8"}, HTML_ERROR_200.encode()))
        elif kind == "reset":
            self._reset()
        else:
            return False
        return True

    def _fault_after(self, fault: Fault, reply: Reply) -> None:
        """Apply a fault that alters a real answer (the request's effects have happened)."""
        kind = fault.kind
        if kind == "bom":
            reply.body = b"\xef\xbb\xbf" + reply.body
            self._send(reply)
        elif kind == "truncated":
            self._send(reply, cut=max(1, len(reply.body) // 2))
        elif kind == "control_chars":
            # A raw control character inside a string value: strict JSON parsers refuse it.
            reply.body = reply.body.replace(b'","', b'\x0b","', 1)
            self._send(reply)
        elif kind == "truncated_json":
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
            reply.headers["Content-Type"] = JSON_TYPE
            self._send(reply)
        elif kind == "timeout_after_send":
            self.server.simulator.faults.released.wait(float(fault.param("seconds", 30)))
            self._reset()
        else:
            self._send(reply)

    def _reset(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.server.reset_sockets.add(id(self.connection))

    def _send(self, reply: Reply, *, cut: int | None = None) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            if name.lower() != "content-length":
                # Cyrillic in headers (Location) travels percent-encoded, as IIS sends it.
                self.send_header(name, value if value.isascii() else quote(value, safe=_HEADER_SAFE))
        self.send_header("Content-Length", str(len(reply.body)))
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body if cut is None else reply.body[:cut])
        if cut is not None:
            self.close_connection = True
