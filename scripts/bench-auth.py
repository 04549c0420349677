#!/usr/bin/env python3
"""Credentials for the authentication variants of scripts/bench.sh.

  tokens  sign COUNT distinct RS256 JWTs (one per line; each its own sub and jti)
  keys    create one API client and COUNT API keys through the admin API (one
          key per line); the admin token comes from $SLUICE_ADMIN_TOKEN
  check   send credentials from a file to a URL and require one status for all

Credentials are written to files created 0600 and never printed. `tokens` needs
PyJWT and cryptography; `keys` and `check` only the standard library.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse
import uuid


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def fail(msg):
    print(f"bench-auth: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def write_private(path, lines):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for line in lines:
            f.write(line + "\n")


# ------------------------------------------------------------------ tokens --

_SIGNER = {}


def _init_signer(pem_path, kid):
    from cryptography.hazmat.primitives import serialization

    with open(pem_path, "rb") as f:
        _SIGNER["key"] = serialization.load_pem_private_key(f.read(), password=None)
    _SIGNER["kid"] = kid


def _sign(claims):
    import jwt

    return jwt.encode(
        claims, _SIGNER["key"], algorithm="RS256", headers={"kid": _SIGNER["kid"]}
    )


def cmd_tokens(a):
    try:
        import cryptography  # noqa: F401
        import jwt  # noqa: F401
    except ImportError as e:
        fail(f"{e.name} is missing: pip install pyjwt cryptography")
    now = int(time.time())
    claims = []
    for i in range(a.count):
        c = {
            "sub": f"bench-user-{i}",
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + a.ttl,
            "roles": ["bench"],
        }
        if a.issuer:
            c["iss"] = a.issuer
        if a.audience:
            c["aud"] = a.audience
        claims.append(c)
    started = time.monotonic()
    procs = max(1, min(a.jobs, os.cpu_count() or 1))
    if procs == 1:
        _init_signer(a.private_key, a.kid)
        tokens = [_sign(c) for c in claims]
    else:
        import multiprocessing

        with multiprocessing.Pool(
            procs, initializer=_init_signer, initargs=(a.private_key, a.kid)
        ) as pool:
            tokens = pool.map(_sign, claims, chunksize=max(1, a.count // (procs * 8)))
    if len(set(tokens)) != a.count:
        fail("the tokens are not all distinct")
    write_private(a.out, tokens)
    lengths = sorted(len(t) for t in tokens)
    log(
        f"signed {a.count} RS256 tokens in {time.monotonic() - started:.1f}s "
        f"({procs} process(es); {lengths[0]}-{lengths[-1]} bytes, valid {a.ttl}s)"
    )


# -------------------------------------------------------------------- keys --


class Admin:
    """One keep-alive connection to the admin API per thread."""

    def __init__(self, base, token):
        u = urllib.parse.urlsplit(base)
        if u.scheme != "http" or not u.hostname:
            fail(f"--admin must be an http:// URL, got {base!r}")
        self.host, self.port = u.hostname, u.port or 80
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        }
        self.local = threading.local()

    def post(self, path, body, attempts=20):
        """POST JSON; retries connection errors and 503 (no leader yet)."""
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(attempts):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.local.conn = conn
            try:
                conn.request("POST", path, body=data, headers=self.headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self.local.conn = None
                last = f"{type(e).__name__}: {e}"
                time.sleep(min(0.05 * (attempt + 1), 1.0))
                continue
            if resp.status == 200:
                return json.loads(payload)
            # The body is the JSON error shape; it never holds a secret.
            last = f"HTTP {resp.status}: {payload[:300].decode(errors='replace')}"
            if resp.status != 503:
                break
            time.sleep(min(0.05 * (attempt + 1), 1.0))
        fail(f"POST {path} failed: {last}")


def cmd_keys(a):
    token = os.environ.get("SLUICE_ADMIN_TOKEN", "")
    if not token:
        fail("SLUICE_ADMIN_TOKEN is not set")
    admin = Admin(a.admin, token)
    client_id = admin.post("/admin/clients", {"name": a.client_name})["client_id"]
    started = time.monotonic()
    done = [0]
    lock = threading.Lock()

    def one(_):
        key = admin.post("/admin/keys", {"client_id": client_id})["key"]
        with lock:
            done[0] += 1
            if done[0] % 2500 == 0 and done[0] < a.count:
                log(f"  {done[0]} / {a.count} keys")
        return key

    with concurrent.futures.ThreadPoolExecutor(a.concurrency) as pool:
        keys = list(pool.map(one, range(a.count)))
    elapsed = time.monotonic() - started
    if len(set(keys)) != a.count:
        fail("the keys are not all distinct")
    write_private(a.out, keys)
    log(
        f"created {a.count} API keys in {elapsed:.1f}s ({a.count / elapsed:.0f}/s, "
        f"{a.concurrency} in parallel)"
    )


# ------------------------------------------------------------------- check --


def cmd_check(a):
    with open(a.file) as f:
        creds = [line.strip() for line in f if line.strip()]
    if not creds:
        fail(f"no credentials in {a.file}")
    u = urllib.parse.urlsplit(a.url)
    path = u.path or "/"
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)

    def status(cred):
        nonlocal conn
        for _ in range(3):
            try:
                conn.request("GET", path, headers={a.header: a.prefix + cred})
                resp = conn.getresponse()
                resp.read()
                return resp.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
        return "connection failed"

    # The last credential created is the last one a node applies: wait for it.
    deadline = time.monotonic() + a.wait
    while (got := status(creds[-1])) != a.expect and time.monotonic() < deadline:
        time.sleep(0.2)
    sample = random.sample(creds, min(a.sample, len(creds)))
    counts = {}
    for cred in [creds[0], creds[-1]] + sample:
        s = status(cred)
        counts[s] = counts.get(s, 0) + 1
    total = sum(counts.values())
    if set(counts) != {a.expect}:
        summary = ", ".join(f"{v}x {k}" for k, v in counts.items())
        fail(f"{a.url} with {a.header}: expected {a.expect} for all {total}, got {summary}")
    log(f"{a.url}: {total} of {len(creds)} credentials in {a.header} -> {a.expect}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("tokens")
    t.add_argument("--private-key", required=True)
    t.add_argument("--kid", required=True)
    t.add_argument("--issuer")
    t.add_argument("--audience")
    t.add_argument("--count", type=int, default=10000)
    t.add_argument("--ttl", type=int, default=3600, help="seconds until exp")
    t.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    t.add_argument("--out", required=True)

    k = sub.add_parser("keys")
    k.add_argument("--admin", required=True, help="http://host:port of admin_listen")
    k.add_argument("--count", type=int, default=10000)
    k.add_argument("--concurrency", type=int, default=16)
    k.add_argument("--client-name", default="bench")
    k.add_argument("--out", required=True)

    c = sub.add_parser("check")
    c.add_argument("--url", required=True)
    c.add_argument("--file", required=True)
    c.add_argument("--header", required=True)
    c.add_argument("--prefix", default="", help='e.g. "Bearer "')
    c.add_argument("--expect", type=int, default=200)
    c.add_argument("--sample", type=int, default=200)
    c.add_argument("--wait", type=float, default=10, help="seconds to wait for the last one")

    a = p.parse_args()
    {"tokens": cmd_tokens, "keys": cmd_keys, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    main()
