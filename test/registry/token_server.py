#!/usr/bin/env python3
"""A token server for the registry tests: the other half of distribution's `auth: token`.

Stdlib only; RS256 signatures come from `openssl dgst -sha256 -sign KEY`. It implements the
parts of the Docker/OCI token protocol that registry clients use:

  GET  /token?service=S&scope=repository:NAME:pull,push[&scope=...][&offline_token=true]
       HTTP Basic credentials optional. Valid ones get the actions they ask for (limited to
       --user-actions); none get --anonymous (pull by default, on repositories only); wrong
       ones get 401. The answer is JSON: token and/or access_token (--token-field),
       expires_in, issued_at, and refresh_token when offline_token=true with credentials.
  POST /token  (OAuth2, form-encoded; off with --no-post, which answers 404 instead)
       grant_type=password (username, password) or grant_type=refresh_token (refresh_token),
       service, scope (space-separated), client_id; access_type=offline adds a refresh_token.

The JWT: header {"typ":"JWT","alg":"RS256","x5c":[base64 DER of --cert]} (the default,
--sign x5c) or {"typ":"JWT","alg":"RS256","kid":"<libtrust key id>"} (--sign kid). The registry
is configured with rootcertbundle = --cert: with x5c it verifies the chain against that bundle
(the self-signed cert is its own root); with kid it looks the id up among the bundle's keys.
Claims: iss, sub, aud (= the requested service, a plain string), exp, nbf, iat, jti, access.

Every request is logged as one line in --log: method, path, service and scopes from the
query, the user (or anonymous), the granted access and the status. Neither the password, the
Authorization header, a refresh token nor an issued token is ever written anywhere.
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse

ALL_ACTIONS = ("pull", "push", "delete", "*")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(spki_der):
    """docker/libtrust's KeyID: the first 240 bits of sha256(DER SubjectPublicKeyInfo), in
    base32, as 12 colon-separated groups of 4 characters."""
    s = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout


class Signer:
    def __init__(self, key, cert, mode):
        self.key = key
        cert_der = openssl("x509", "-in", cert, "-outform", "DER")
        if mode == "x5c":
            self.header = {"typ": "JWT", "alg": "RS256",
                           "x5c": [base64.b64encode(cert_der).decode("ascii")]}
        else:
            pub_pem = openssl("x509", "-in", cert, "-noout", "-pubkey")
            spki = openssl("pkey", "-pubin", "-outform", "DER", data=pub_pem)
            self.header = {"typ": "JWT", "alg": "RS256", "kid": libtrust_key_id(spki)}

    def sign(self, claims):
        signing_input = (b64url(json.dumps(self.header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = openssl("dgst", "-sha256", "-sign", self.key, data=signing_input.encode("ascii"))
        return signing_input + "." + b64url(sig)


def parse_scope(scope):
    """'repository:ns/name:pull,push' -> ('repository', 'ns/name', ['pull', 'push']).
    The name sits between the first and the last colon (it may hold a host:port)."""
    typ, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not typ or not name:
        return None
    return typ, name, [a for a in actions.split(",") if a]


class TokenServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, args, signer, password):
        super().__init__(addr, Handler)
        self.args = args
        self.signer = signer
        self.password = password
        self.lock = threading.Lock()
        self.refresh_tokens = {}  # refresh token -> user
        self.log_file = open(args.log, "a", buffering=1) if args.log else None

    def log_line(self, line):
        if self.log_file:
            with self.lock:
                self.log_file.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ocibuild-test-token-server"

    def log_message(self, fmt, *args):  # the request log is ours (see log_request_line)
        pass

    # -- helpers ------------------------------------------------------------------------

    def reply(self, status, body, extra_headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_request_line(self, method, path, service, scopes, user, granted, status, note=""):
        fields = ["t=%.3f" % time.time(), "method=" + method, "path=" + path,
                  "service=" + (service or "-")]
        fields += ["scope=" + s for s in scopes] or ["scope=-"]
        fields += ["user=" + (user or "anonymous"),
                   "granted=" + (";".join("%s:%s:%s" % (a["type"], a["name"], ",".join(a["actions"]))
                                          for a in granted) or "-"),
                   "status=%d" % status]
        if note:
            fields.append("note=" + note)
        self.server.log_line(" ".join(fields))

    def basic_credentials(self):
        """(user, password) from the Authorization header, or None when there is none."""
        value = self.headers.get("Authorization", "")
        if not value.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(value[6:].strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return ("", None)
        return (user, password)

    def check_user(self, user, password):
        args = self.server.args
        return (user == args.user and password is not None and
                secrets.compare_digest(password.encode(), self.server.password.encode()))

    def grant(self, user, scopes):
        """The access entries for USER (None: anonymous) asking for SCOPES."""
        args = self.server.args
        allowed = set(args.user_actions.split(",")) if user else (
            {"pull"} if args.anonymous == "pull" else set())
        granted = {}
        for scope in scopes:
            parsed = parse_scope(scope)
            if not parsed:
                continue
            typ, name, actions = parsed
            if user is None and typ != "repository":
                continue
            ok = [a for a in actions if a in allowed]
            if ok:
                entry = granted.setdefault((typ, name), [])
                entry += [a for a in ok if a not in entry]
        return [{"type": t, "name": n, "actions": a} for (t, n), a in granted.items()]

    def issue(self, user, service, granted, with_refresh):
        args = self.server.args
        now = int(time.time())
        claims = {
            "iss": args.issuer,
            "sub": user or "",
            "aud": service,
            "exp": now + args.expires_in,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": granted,
        }
        token = self.server.signer.sign(claims)
        body = {"expires_in": args.expires_in,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
        if args.token_field in ("token", "both"):
            body["token"] = token
        if args.token_field in ("access_token", "both"):
            body["access_token"] = token
        if with_refresh and user:
            refresh = secrets.token_urlsafe(24)
            with self.server.lock:
                self.server.refresh_tokens[refresh] = user
            body["refresh_token"] = refresh
        return body

    # -- endpoints ------------------------------------------------------------------------

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        service = (query.get("service") or [""])[0]
        scopes = [s for v in query.get("scope", []) for s in v.split(" ") if s]
        if url.path != self.server.args.path:
            self.log_request_line("GET", url.path, service, scopes, None, [], 404)
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]})
        creds = self.basic_credentials()
        user = None
        if creds is not None:
            if not self.check_user(*creds):
                self.log_request_line("GET", url.path, service, scopes, creds[0] or "-", [], 401,
                                      "bad-credentials")
                return self.reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                                    "message": "invalid username or password"}]},
                                  [("WWW-Authenticate", 'Basic realm="ocibuild-test-token"')])
            user = creds[0]
        if service != self.server.args.service:
            self.log_request_line("GET", url.path, service, scopes, user, [], 400, "unknown-service")
            return self.reply(400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
        granted = self.grant(user, scopes)
        offline = (query.get("offline_token") or ["false"])[0] == "true"
        body = self.issue(user, service, granted, offline)
        self.log_request_line("GET", url.path, service, scopes, user, granted, 200)
        self.reply(200, body)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"),
                                     keep_blank_values=True)
        get = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        service = get("service")
        scopes = [s for s in get("scope").split(" ") if s]
        if url.path != self.server.args.path or self.server.args.no_post:
            self.log_request_line("POST", url.path, service, scopes, None, [], 404)
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]})
        grant_type = get("grant_type")
        user = None
        if grant_type == "password":
            if not self.check_user(get("username"), get("password")):
                self.log_request_line("POST", url.path, service, scopes, get("username") or "-", [],
                                      401, "bad-credentials")
                return self.reply(401, {"error": "invalid_grant"})
            user = get("username")
        elif grant_type == "refresh_token":
            with self.server.lock:
                user = self.server.refresh_tokens.get(get("refresh_token"))
            if user is None:
                self.log_request_line("POST", url.path, service, scopes, "-", [], 401,
                                      "bad-refresh-token")
                return self.reply(401, {"error": "invalid_grant"})
        else:
            self.log_request_line("POST", url.path, service, scopes, None, [], 400,
                                  "unsupported-grant-type")
            return self.reply(400, {"error": "unsupported_grant_type"})
        if service != self.server.args.service:
            self.log_request_line("POST", url.path, service, scopes, user, [], 400, "unknown-service")
            return self.reply(400, {"error": "invalid_request"})
        granted = self.grant(user, scopes)
        body = self.issue(user, service, granted,
                          grant_type == "password" and get("access_type") == "offline")
        # OAuth2 answers carry access_token only, whatever --token-field says.
        body["access_token"] = body.pop("token", None) or body["access_token"]
        body["scope"] = " ".join("%s:%s:%s" % (a["type"], a["name"], ",".join(a["actions"]))
                                 for a in granted)
        self.log_request_line("POST", url.path, service, scopes, user, granted, 200,
                              "grant=" + grant_type)
        self.reply(200, body)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free port)")
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--key", required=True, help="RSA private key (PEM) that signs the tokens")
    p.add_argument("--cert", required=True, help="its certificate (PEM): the registry's rootcertbundle")
    p.add_argument("--sign", choices=("x5c", "kid"), default="x5c",
                   help="how the JWT header names the key (default x5c)")
    p.add_argument("--issuer", default="ocibuild-test-issuer")
    p.add_argument("--service", default="ocibuild-test")
    p.add_argument("--path", default="/token", help="the realm's path (default /token)")
    p.add_argument("--user", default="ociuser")
    p.add_argument("--password-env", default="REGISTRY_TEST_PASSWORD",
                   help="environment variable holding the user's password")
    p.add_argument("--user-actions", default="pull,push,delete,*",
                   help="actions the user may be granted (comma-separated)")
    p.add_argument("--anonymous", choices=("pull", "none"), default="pull",
                   help="what a request without credentials gets (default pull)")
    p.add_argument("--token-field", choices=("token", "access_token", "both"), default="both")
    p.add_argument("--expires-in", type=int, default=300, help="token lifetime in seconds")
    p.add_argument("--no-post", action="store_true", help="answer POST /token with 404")
    p.add_argument("--log", help="request log file (one line per request)")
    args = p.parse_args()

    password = os.environ.get(args.password_env)
    if not password:
        sys.exit("token_server: $%s is empty or unset" % args.password_env)
    if set(args.user_actions.split(",")) - set(ALL_ACTIONS):
        sys.exit("token_server: --user-actions takes a subset of %s" % ",".join(ALL_ACTIONS))
    host, _, port = args.listen.rpartition(":")
    server = TokenServer((host, int(port)), args, Signer(args.key, args.cert, args.sign), password)
    bound = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % bound)
        os.replace(tmp, args.port_file)
    print("token_server: listening on %s:%d (sign=%s, service=%s, issuer=%s)"
          % (host, bound, args.sign, args.service, args.issuer), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
