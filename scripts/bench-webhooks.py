#!/usr/bin/env python3
"""Webhook benchmark driver (issue 10), run by scripts/bench-webhooks.sh against a
three-node cluster it started. Standard library only.

Parts:
  accept-1, accept-32  events accepted per second (202 after commit) with 1 and
                       32 concurrent publishers (keep-alive connections spread
                       over the three nodes), ACCEPT_SECONDS each
  deliver              deliveries per second to a fast local receiver, and the
                       end-to-end latency publish -> delivery (p50/p99): LAT_EVENTS
                       events from 4 paced publishers, each latency = receiver
                       arrival - the moment the POST was sent
  drain                a receiver outage of OUTAGE_SECONDS with DRAIN_EVENTS events
                       queued, then the time from the receiver's return until every
                       event was delivered
"""

import http.client
import json
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADMIN_PORTS = [int(p) for p in os.environ["ADMIN_PORTS"].split()]
TOKEN = os.environ["SLUICE_ADMIN_TOKEN"]
RECEIVER_PORT = int(os.environ.get("RECEIVER_PORT", "19290"))
ACCEPT_SECONDS = float(os.environ.get("ACCEPT_SECONDS", "10"))
LAT_EVENTS = int(os.environ.get("LAT_EVENTS", "2000"))
DRAIN_EVENTS = int(os.environ.get("DRAIN_EVENTS", "10000"))
OUTAGE_SECONDS = float(os.environ.get("OUTAGE_SECONDS", "60"))
PARTS = os.environ.get("PARTS", "accept deliver drain").split()


class Receiver:
    """Answers 200 (or 503 while `down`), records the first arrival per webhook-id."""

    def __init__(self, port):
        self.lock = threading.Lock()
        self.first = {}
        self.requests = 0
        self.down = False
        recv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length", "0"))
                self.rfile.read(n)
                now = time.time()
                wid = self.headers.get("webhook-id", "")
                if recv.down:
                    code = 503
                else:
                    code = 200
                    with recv.lock:
                        recv.requests += 1
                        recv.first.setdefault(wid, now)
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, ids):
        with self.lock:
            return sum(1 for i in ids if i in self.first)


def conn(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)


def call(c, method, path, body=None):
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data else None)


def publish(c, n):
    """POST one event; retries on 503 (an election). Returns (id, sent_at)."""
    while True:
        sent = time.time()
        status, body = call(c, "POST", "/admin/events", {"type": "bench.event", "data": {"n": n}})
        if status == 202:
            return body["id"], sent
        if status != 503:
            raise SystemExit(f"publish: {status} {body}")
        time.sleep(0.1)


def subscribe(url, types, schedule):
    c = conn(ADMIN_PORTS[0])
    status, body = call(c, "POST", "/admin/webhooks/subscriptions",
                        {"url": url, "event_types": types, "retry_schedule": schedule})
    if status != 201:
        raise SystemExit(f"subscribe: {status} {body}")
    return body["id"]


def unsubscribe(sid):
    call(conn(ADMIN_PORTS[0]), "DELETE", f"/admin/webhooks/subscriptions/{sid}")


def accept(publishers, seconds):
    """Events accepted/s with `publishers` concurrent keep-alive publishers."""
    done = []
    stop = time.time() + seconds
    lock = threading.Lock()

    def run(i):
        c = conn(ADMIN_PORTS[i % len(ADMIN_PORTS)])
        n = 0
        while time.time() < stop:
            publish(c, n)
            n += 1
        with lock:
            done.append(n)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(publishers)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done) / (time.time() - t0)


def wait_all(rx, ids, deadline):
    end = time.time() + deadline
    while time.time() < end:
        if rx.count(ids) == len(ids):
            return True
        time.sleep(0.05)
    return False


def main():
    rx = Receiver(RECEIVER_PORT)
    url = f"http://127.0.0.1:{RECEIVER_PORT}/hook"
    results = {}

    if "accept" in PARTS:
        # No subscriber for this type: accepting only (commit), no deliveries.
        for p in (1, 32):
            rate = accept(p, ACCEPT_SECONDS)
            results[f"accepted/s, {p} publisher(s)"] = f"{rate:.0f}"
            print(f"accept {p}: {rate:.0f} events/s", flush=True)

    if "deliver" in PARTS:
        sid = subscribe(url, ["lat.*"], ["0s", "1s", "5s"])
        sent = {}
        lock = threading.Lock()
        per = LAT_EVENTS // 4

        def run(i):
            c = conn(ADMIN_PORTS[i % len(ADMIN_PORTS)])
            for n in range(per):
                t = time.time()
                status, body = call(c, "POST", "/admin/events", {"type": "lat.event", "data": {"n": n}})
                if status == 202:
                    with lock:
                        sent[body["id"]] = t

        t0 = time.time()
        ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        ok = wait_all(rx, list(sent), 300)
        elapsed = max(rx.first[i] for i in sent if i in rx.first) - t0
        lat = sorted((rx.first[i] - s) * 1000 for i, s in sent.items() if i in rx.first)
        results["deliveries/s (4 publishers, one subscriber)"] = f"{len(lat) / elapsed:.0f}"
        results["publish->delivery p50 ms"] = f"{statistics.median(lat):.1f}"
        results["publish->delivery p99 ms"] = f"{lat[int(len(lat) * 0.99) - 1]:.1f}"
        if not ok:
            results["deliver: missing"] = str(len(sent) - len(lat))
        print(f"deliver: {results}", flush=True)
        unsubscribe(sid)

    if "drain" in PARTS:
        # Retries every few seconds so the outage is felt but the backlog is
        # retried soon after the receiver is back.
        schedule = ["0s", "1s", "2s", "5s"] + ["5s"] * 16
        sid = subscribe(url, ["drain.*"], schedule)
        rx.down = True
        t_down = time.time()
        ids = []
        lock = threading.Lock()

        def run(i, count):
            c = conn(ADMIN_PORTS[i % len(ADMIN_PORTS)])
            for n in range(count):
                status, body = call(c, "POST", "/admin/events", {"type": "drain.event", "data": {"n": n}})
                if status == 202:
                    with lock:
                        ids.append(body["id"])

        ts = [threading.Thread(target=run, args=(i, DRAIN_EVENTS // 16)) for i in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        queued_in = time.time() - t_down
        rest = OUTAGE_SECONDS - queued_in
        if rest > 0:
            time.sleep(rest)
        rx.down = False
        t_up = time.time()
        ok = wait_all(rx, ids, 900)
        drain = max(rx.first[i] for i in ids if i in rx.first) - t_up
        results[f"backlog of {len(ids)} queued in"] = f"{queued_in:.1f}s"
        results[f"drain after a {OUTAGE_SECONDS:.0f}s outage"] = f"{drain:.1f}s" + ("" if ok else " (incomplete)")
        print(f"drain: {results}", flush=True)
        unsubscribe(sid)

    print("\nRESULTS")
    for k, v in results.items():
        print(f"  {k:<48} {v}")


if __name__ == "__main__":
    sys.exit(main())
