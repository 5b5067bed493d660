#!/usr/bin/env python3
"""An HTTP/1.1 proxy that puts chosen faults between a registry client and a real registry.

Stdlib only. Threaded, keep-alive on both sides, and bodies are streamed in 64 KiB pieces in
both directions (a 100 MB blob never sits in memory). Request bodies may come with a
Content-Length or chunked; responses are passed on with the upstream's Content-Length, or
re-chunked when the upstream did not give one. Hop-by-hop headers are dropped. Requests go
upstream with Host = the upstream's address (unless --preserve-host), and Location and Link
headers that point at the upstream are rewritten to point at this proxy.

Faults: each is METHOD:REGEX[:N]. METHOD is an HTTP method or *, REGEX is searched (re.search)
in the request path without its query string. Each fault counts the requests that match it,
and N says which of them it fires on: N (the first N), K-M (the K-th to the M-th) or K- (the
K-th and all after it); left out, every match. REGEX may hold colons (e.g. /blobs/sha256:);
a last field of the form N, K-M or K- is always taken as the count. (Resets, cut and corrupt
answers and the like are tested in `cargo test` against an in-process registry,
native/ocibuild_core/src/registry/testing/; this proxy keeps what the shell suites use.)

  --status CODE:METHOD:REGEX[:N]   answer CODE (429, 500, 503, ...) without forwarding; the
                                   request body is read and dropped first. --retry-after SECS
                                   adds Retry-After to injected 429 and 503 answers.
  --throttle-get BYTES_PER_SEC     send the bodies of GET .../blobs/... answers at this rate.
  --location-to SCHEME://HOST:PORT hand out upload sessions elsewhere: the Location of every
                                   answer to POST/PATCH .../blobs/uploads/ points at this
                                   origin instead of the proxy (another proxy in front of the
                                   same registry, say, as S3-backed registries hand out
                                   storage URLs). Its log lines carry fault=location-to.
  --tls-cert PEM --tls-key PEM     listen with TLS (HTTPS) instead of plain HTTP.

Log (--log): one line per request, fields in this order:
  t=EPOCH id=N conn=N method=M path=P status=S upstream=U req_bytes=B up_bytes=B
  resp_bytes=B fault=F ms=T auth=A [range=R]
status is what the client got: a code, or `client-gone` (with the code before it, as in
200+client-gone, when the client left during the answer); upstream is the upstream's
status, - when the request was not forwarded, or `error`; req_bytes is the request body bytes
read from the client, up_bytes what went upstream, resp_bytes the answer body bytes sent to
the client; fault is - or the faults that fired, joined with + (status:503, throttle:BPS,
location-to); auth is the scheme of
the request's Authorization header, lowercased (basic, bearer), or - without one (never its
value); range is the upstream's Range header when it sent one. The query
string keeps only the values of digest, mount, from, n, last and artifactType: any other
value (e.g. distribution's signed _state) is logged as <redacted>. Headers are never logged.
"""

import argparse
import http.client
import http.server
import itertools
import os
import re
import sys
import threading
import time
import urllib.parse

PIECE = 64 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "proxy-connection"}
SAFE_QUERY_KEYS = {"digest", "mount", "from", "n", "last", "artifactType"}
STATUS_CODES = {429: "TOOMANYREQUESTS", 500: "UNKNOWN", 502: "UNKNOWN", 503: "UNAVAILABLE",
                504: "UNKNOWN"}


def auth_scheme(value):
    """The scheme of an Authorization header (never its credentials), or -."""
    scheme = (value or "").strip().split(" ", 1)[0].lower()
    return re.sub(r"[^a-z0-9-]", "?", scheme) or "-"


class Fault:
    def __init__(self, kind, spec, value=None):
        method, sep, rest = spec.partition(":")
        if not sep or not method:
            raise ValueError("%s: expected METHOD:REGEX[:N], got %r" % (kind, spec))
        regex, self.first, self.last = rest, 1, None  # every match
        head, sep, tail = rest.rpartition(":")
        m = re.fullmatch(r"(\d+)(?:-(\d*))?", tail) if sep else None
        if m:
            regex = head
            if m.group(2) is None:  # N: the first N
                self.last = int(m.group(1))
            else:  # K-M or K-
                self.first = int(m.group(1))
                self.last = int(m.group(2)) if m.group(2) else None
        self.kind, self.value = kind, value
        self.method = method.upper()
        self.regex = re.compile(regex)
        self.seen = 0  # matching requests so far
        self.label = kind if value is None else "%s:%s" % (kind, value)

    def matches(self, method, path):
        return (self.method in ("*", method)) and self.regex.search(path) is not None


class Faults:
    def __init__(self, faults):
        self.faults = faults
        self.lock = threading.Lock()

    def select(self, method, path):
        """Count this request against every fault it matches; return {kind: fault} for the
        faults that fire on it (the first listed, when two fire)."""
        firing = {}
        with self.lock:
            for f in self.faults:
                if f.matches(method, path):
                    f.seen += 1
                    if f.seen >= f.first and (f.last is None or f.seen <= f.last):
                        firing.setdefault(f.kind, f)
        return firing


def redact_path(raw):
    url = urllib.parse.urlsplit(raw)
    if not url.query:
        return url.path
    parts = []
    for k, v in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
        parts.append("%s=%s" % (k, v if k in SAFE_QUERY_KEYS else "<redacted>"))
    return url.path + "?" + "&".join(parts)


class ClientGone(Exception):
    pass


class Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr, args, faults):
        super().__init__(addr, Handler)
        self.args = args
        self.faults = faults
        self.upstream_host, _, port = args.upstream.rpartition(":")
        self.upstream_port = int(port)
        self.log_lock = threading.Lock()
        self.log_file = open(args.log, "a", buffering=1) if args.log else None
        self.ids = itertools.count(1)
        self.conn_ids = itertools.count(1)
        up = args.upstream
        self.upstream_prefixes = ["http://" + up, "http://localhost:" + str(self.upstream_port)]
        if self.upstream_host in ("127.0.0.1", "localhost"):
            self.upstream_prefixes.append("http://127.0.0.1:" + str(self.upstream_port))

    def log_line(self, line):
        if self.log_file:
            with self.log_lock:
                self.log_file.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ocibuild-test-fault-proxy"
    timeout = 600  # a client that stalls this long is dropped

    def setup(self):
        super().setup()
        self.conn_id = next(self.server.conn_ids)
        self.upstream = None

    def finish(self):
        try:
            super().finish()
        finally:
            if self.upstream is not None:
                self.upstream.close()

    def log_message(self, fmt, *args):  # the request log is ours (see log_request_line)
        pass

    def log_error(self, fmt, *args):
        sys.stderr.write("fault_proxy: conn %d: %s\n" % (self.conn_id, fmt % args))

    # -- request body -----------------------------------------------------------------------

    def body_pieces(self, limit=None):
        """Yield the request body (de-chunked) in pieces, stopping after LIMIT bytes if given.
        Sets self.body_done once the whole body has been read."""
        self.body_done = False
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            got = 0
            while True:
                if self.chunk_left == 0:
                    line = self.rfile.readline(65537)
                    if not line:
                        raise ClientGone("client closed inside a chunked body")
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        self.body_done = True
                        return
                    self.chunk_left = size
                want = min(self.chunk_left, PIECE)
                if limit is not None:
                    if got >= limit:
                        return
                    want = min(want, limit - got)
                data = self.rfile.read(want)
                if not data:
                    raise ClientGone("client closed inside a chunk")
                self.chunk_left -= len(data)
                if self.chunk_left == 0:
                    self.rfile.readline(3)  # the CRLF after the chunk
                got += len(data)
                self.req_bytes += len(data)
                yield data
        else:
            length = int(self.headers.get("Content-Length") or 0)
            left = length - self.req_bytes
            if limit is not None:
                left = min(left, limit)
            while left > 0:
                data = self.rfile.read(min(left, PIECE))
                if not data:
                    raise ClientGone("client closed %d bytes before the end of the body" % left)
                left -= len(data)
                self.req_bytes += len(data)
                yield data
            self.body_done = self.req_bytes >= length

    def drain_body(self):
        for _ in self.body_pieces():
            pass

    # -- upstream --------------------------------------------------------------------------

    def connect_upstream(self):
        if self.upstream is None:
            self.upstream = http.client.HTTPConnection(
                self.server.upstream_host, self.server.upstream_port,
                timeout=self.server.args.upstream_timeout)
        return self.upstream

    def upstream_headers(self, body_mode, length=None):
        out = []
        for k, v in self.headers.items():
            lk = k.lower()
            if lk in HOP_BY_HOP or lk == "content-length":
                continue
            if lk == "host" and not self.server.args.preserve_host:
                v = self.server.args.upstream
            out.append((k, v))
        if body_mode == "chunked":
            out.append(("Transfer-Encoding", "chunked"))
        elif body_mode == "length":
            out.append(("Content-Length", str(length)))
        return out

    def send_upstream(self, pieces, body_mode, length=None):
        """Send the request upstream with the body from PIECES; return the response (or None
        if the upstream could not be reached). The client's body is read to its end even if
        the upstream stops listening, so the client connection stays in step."""
        for attempt in (1, 2):
            conn = self.connect_upstream()
            reused = conn.sock is not None
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.upstream_headers(body_mode, length):
                    conn.putheader(k, v)
                conn.endheaders()
            except (OSError, http.client.HTTPException):
                # A kept-alive connection that the upstream had closed: try a new one.
                conn.close()
                self.upstream = None
                if attempt == 2:
                    for _ in pieces:
                        pass
                    return None
                continue
            broken = False
            for data in pieces:
                if broken:
                    continue
                try:
                    if body_mode == "chunked":
                        conn.send(b"%x\r\n" % len(data) + data + b"\r\n")
                    else:
                        conn.send(data)
                    self.up_bytes += len(data)
                except OSError:
                    broken = True  # the upstream answered early (e.g. 401) and closed
            if body_mode == "chunked" and not broken:
                try:
                    conn.send(b"0\r\n\r\n")
                except OSError:
                    pass
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.upstream = None
                # A request without a body that met a stale kept-alive connection is safe to
                # send again; one whose body was consumed is not.
                if attempt == 1 and reused and body_mode is None:
                    continue
                return None
            self.upstream_status = resp.status
            self.range = resp.getheader("Range")
            return resp
        return None

    # -- answers ---------------------------------------------------------------------------

    def rewrite(self, value):
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        for prefix in self.server.upstream_prefixes:
            if prefix in value:
                scheme = "https://" if self.server.args.tls_cert else "http://"
                value = value.replace(prefix, scheme + host)
        return value

    def hands_off_upload(self):
        path = urllib.parse.urlsplit(self.path).path
        return (self.server.args.location_to is not None
                and self.command in ("POST", "PATCH") and "/blobs/uploads/" in path)

    def hand_off(self, value):
        """The same upload URL on the --location-to origin."""
        parts = urllib.parse.urlsplit(value)
        return self.server.args.location_to.rstrip("/") + urllib.parse.urlunsplit(
            ("", "", parts.path, parts.query, parts.fragment))

    def send_head(self, status, reason, headers):
        self.send_response_only(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.status = str(status)

    def relay(self, resp, throttle=None):
        """Pass the upstream answer on to the client, streaming its body."""
        headers = []
        length = None
        for k, v in resp.getheaders():
            lk = k.lower()
            if lk in HOP_BY_HOP:
                continue
            if lk == "content-length":
                length = v
            if lk in ("location", "link", "content-location"):
                v = self.rewrite(v)
            if lk == "location" and self.hands_off_upload():
                v = self.hand_off(v)
            headers.append((k, v))
        no_body = (self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200)
        chunked = not no_body and length is None
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        # (http.client itself drops a connection the upstream said it would close.)
        self.send_head(resp.status, resp.reason, headers)
        if no_body:
            resp.read()
            return
        start = time.monotonic()
        sent = 0
        piece = PIECE if not throttle else max(1, min(PIECE, throttle // 10))
        while True:
            data = resp.read(piece)
            if not data:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            sent += len(data)
            self.resp_bytes = sent
            if throttle:
                ahead = sent / throttle - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def inject(self, code, retry_after):
        body = ('{"errors":[{"code":"%s","message":"injected by fault_proxy"}]}'
                % STATUS_CODES.get(code, "UNKNOWN")).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if retry_after is not None and code in (429, 503):
            headers.append(("Retry-After", str(retry_after)))
        reason = http.server.BaseHTTPRequestHandler.responses.get(code, ("Injected",))[0]
        self.send_head(code, reason, headers)
        if self.command != "HEAD":
            self.wfile.write(body)
            self.resp_bytes = len(body)

    # -- the request -----------------------------------------------------------------------

    def handle_request(self):
        args = self.server.args
        faults = self.server.faults
        t0 = time.monotonic()
        self.req_bytes = self.up_bytes = self.resp_bytes = 0
        self.chunk_left = 0
        self.body_done = True
        self.status = "-"
        self.upstream_status = "-"
        self.range = None
        fault_label = "-"
        method = self.command
        path_only = urllib.parse.urlsplit(self.path).path
        te = self.headers.get("Transfer-Encoding", "").lower()
        has_body = "chunked" in te or int(self.headers.get("Content-Length") or 0) > 0
        if "chunked" in te:
            body_mode = "chunked"
        elif "Content-Length" in self.headers:
            body_mode = "length"  # even 0: pass on what the client said
        else:
            body_mode = None
        try:
            firing = faults.select(method, path_only)
            labels = []
            f = firing.get("status")
            if f:
                fault_label = f.label
                self.drain_body()
                self.inject(f.value, args.retry_after)
                return
            throttle = None
            if args.throttle_get and method == "GET" and "/blobs/" in path_only:
                throttle = args.throttle_get
                labels.append("throttle:%d" % throttle)
            if self.hands_off_upload():
                labels.append("location-to")
            fault_label = "+".join(labels) or "-"

            length = int(self.headers.get("Content-Length") or 0)
            resp = self.send_upstream(self.body_pieces() if has_body else iter(()),
                                      body_mode, length)
            if resp is None:
                self.upstream_status = "error"
                self.close_connection = True
                self.inject(502, None)
                return
            if not self.body_done:
                self.close_connection = True
            self.relay(resp, throttle=throttle)
        except ClientGone as e:
            self.close_connection = True
            self.status = "client-gone"
            self.log_error("%s", e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self.status = "client-gone" if self.status == "-" else self.status + "+client-gone"
        finally:
            fields = ["t=%.3f" % time.time(), "id=%d" % next(self.server.ids),
                      "conn=%d" % self.conn_id, "method=" + method,
                      "path=" + redact_path(self.path), "status=%s" % self.status,
                      "upstream=%s" % self.upstream_status, "req_bytes=%d" % self.req_bytes,
                      "up_bytes=%d" % self.up_bytes, "resp_bytes=%d" % self.resp_bytes,
                      "fault=" + fault_label, "ms=%d" % ((time.monotonic() - t0) * 1000),
                      "auth=" + auth_scheme(self.headers.get("Authorization"))]
            if self.range:
                fields.append("range=" + self.range)
            self.server.log_line(" ".join(fields))

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_request


def main():
    p = argparse.ArgumentParser(
        description="HTTP/1.1 fault-injecting proxy for registry tests",
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="HOST:PORT of the registry")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free port)")
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--log", help="request log file (one line per request)")
    p.add_argument("--preserve-host", action="store_true",
                   help="send the client's Host header upstream (default: the upstream's address)")
    p.add_argument("--upstream-timeout", type=float, default=300)
    p.add_argument("--status", action="append", default=[], metavar="CODE:METHOD:REGEX[:N]")
    p.add_argument("--retry-after", type=int, metavar="SECS")
    p.add_argument("--throttle-get", type=int, metavar="BYTES_PER_SEC")
    p.add_argument("--location-to", metavar="SCHEME://HOST:PORT")
    p.add_argument("--tls-cert", metavar="PEM")
    p.add_argument("--tls-key", metavar="PEM")
    args = p.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")

    faults = []
    try:
        for spec in args.status:
            code, _, rest = spec.partition(":")
            faults.append(Fault("status", rest, int(code)))
    except (ValueError, re.error) as e:
        p.error(str(e))

    host, _, port = args.listen.rpartition(":")
    server = Proxy((host, int(port)), args, Faults(faults))
    if args.tls_cert:
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    bound = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % bound)
        os.replace(tmp, args.port_file)
    print("fault_proxy: listening on %s:%d -> %s, faults: %s"
          % (host, bound, args.upstream, " ".join(f.label + "=" + f.method + ":" + f.regex.pattern
                                                   for f in faults) or "none"), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
