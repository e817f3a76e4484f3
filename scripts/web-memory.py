#!/usr/bin/env python3
"""Web server memory under sign-in load: a password-guessing flood, then concurrent correct
sign-ins. Python's standard library only.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/updraft_memory scripts/web-memory.py

starts `updraft webserver` on a free port against that database (creating the user
`memory_probe`), or measures a running server with `--url URL --pid PID --user U --password P`.

What it does, reading the server's resident memory (VmRSS) from /proc:
  1. idle: after one request, settled for 2 s;
  2. flood: 1,000 basic-auth requests with wrong passwords, 50 at a time, from 50 loopback
     addresses (127.0.0.1 .. 127.0.0.50) and a new username each time (so the throttle never
     spares the password check): the peak and the value after;
  3. sign-ins: 50 concurrent requests with the right password, each from its own address:
     the peak, and the value 10 s later.
Targets (RELIABILITY.md, "Hostile input"): under 100 MB after the flood; within 20 MB of idle
10 s after the sign-ins. Exits 1 when a target is missed.
"""

import argparse
import base64
import collections
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

MB = 1024 * 1024


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Peak:
    """Samples RSS every 20 ms in the background; `take()` returns the peak since the last."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop:
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(0.02)

    def take(self):
        p, self.peak = self.peak, rss(self.pid)
        return p


def request(url, path, user, password, source):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120, source_address=(source, 0))
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        conn.request("GET", path, headers={"Authorization": f"Basic {auth}"})
        return conn.getresponse().status
    except OSError as e:
        return f"error: {e.__class__.__name__}"
    finally:
        conn.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, database_url):
    user, password = "memory_probe", "memory-probe-password"
    env = dict(os.environ, DATABASE_URL=database_url, UPDRAFT_LOG="warn")
    subprocess.run(
        [binary, "users", "create", "--username", user, "--password", password, "--role", "viewer"],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "webserver", "--host", "127.0.0.1", "--port", str(port)], env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            u = urllib.parse.urlsplit(url)
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            sys.exit("the web server did not come up")
        time.sleep(0.2)
    return proc, url, user, password


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("UPDRAFT_BIN", "updraft"))
    ap.add_argument("--url")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--flood", type=int, default=1000)
    ap.add_argument("--addresses", type=int, default=50)
    ap.add_argument("--signins", type=int, default=50)
    args = ap.parse_args()

    proc = None
    if args.url:
        url, pid, user, password = args.url, args.pid, args.user, args.password
    else:
        db = os.environ.get("DATABASE_URL") or sys.exit("set DATABASE_URL (or pass --url/--pid)")
        proc, url, user, password = start_server(args.bin, db)
        pid = proc.pid
    path = "/api/v2/version"
    try:
        peak = Peak(pid)
        request(url, path, user, password, "127.0.0.1")
        time.sleep(2)
        idle = rss(pid)
        peak.take()

        addrs = [f"127.0.0.{i + 1}" for i in range(args.addresses)]
        started = time.time()
        with ThreadPoolExecutor(50) as pool:
            codes = collections.Counter(pool.map(
                lambda i: request(url, path, f"guess{i}", f"wrong-{i}", addrs[i % len(addrs)]),
                range(args.flood),
            ))
        flood_secs = time.time() - started
        flood_peak, after_flood = peak.take(), rss(pid)

        with ThreadPoolExecutor(args.signins) as pool:
            ok = collections.Counter(pool.map(
                lambda i: request(url, path, user, password, f"127.0.1.{i + 1}"),
                range(args.signins),
            ))
        signin_peak = peak.take()
        time.sleep(10)
        after_signins = rss(pid)
    finally:
        if proc:
            proc.terminate()
            proc.wait()

    print(f"idle RSS                          {idle / MB:7.1f} MB")
    print(f"flood: {args.flood} wrong passwords, {args.addresses} addresses, 50 at a time, {flood_secs:.1f} s")
    print(f"  answers                         {dict(codes)}")
    print(f"  peak RSS                        {flood_peak / MB:7.1f} MB")
    print(f"  RSS after                       {after_flood / MB:7.1f} MB   (target < 100 MB)")
    print(f"sign-ins: {args.signins} concurrent, right password")
    print(f"  answers                         {dict(ok)}")
    print(f"  peak RSS                        {signin_peak / MB:7.1f} MB")
    print(f"  RSS 10 s after                  {after_signins / MB:7.1f} MB   (target < idle + 20 MB = {(idle + 20 * MB) / MB:.1f} MB)")
    missed = after_flood >= 100 * MB or after_signins > idle + 20 * MB
    print("targets:", "MISSED" if missed else "met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
