#!/usr/bin/python3
"""Load client for the status cache benchmarks (bench/cache_bench.pl).

Only the Python standard library (asyncio): Debian 12's /usr/bin/python3.

  cache_client.py fill    --port P --path /request/{id}.der --ids A:B [-c N]
      GET every id in [A, B) over N keep-alive connections; prints JSON
      {"requests", "status": {code: n}, "cache": {X-Cache-Status: n},
       "seconds"}.
  cache_client.py scan    --port P --path /request/{id}.der --ids A:B
      GET ids B-1, B-2, ... down to A on one connection and stop at the
      first answer that is not X-Cache-Status: HIT; prints {"hits", ...}.
      After a sequential fill this is the number of entries the zone held.
  cache_client.py waiters --port P --path /request/{id}.pem?wait=30
      --id ID -n N [--ready FILE]
      N clients at once (one connection each); writes "ready" to FILE when
      every request is sent; prints {"status": ..., "bodies": distinct
      bodies, "done": [seconds since ready, ...]} when all have answered.

Ids are made from numbers as 00000000-0000-4000-8000-%012d, the shape of a
TSB request id.
"""

import argparse
import asyncio
import json
import sys
import time


def make_id(n):
    return "00000000-0000-4000-8000-%012d" % n


async def read_response(reader):
    """One HTTP/1.1 response with Content-Length (or to EOF)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("connection", "").lower() == "close":
        body = await reader.read()
    else:
        body = b""
    return status, headers, body


def request_bytes(path, close=False):
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
            % (path, "Connection: close\r\n" if close else "")).encode()


async def fill(args):
    a, b = (int(x) for x in args.ids.split(":"))
    queue = iter(range(a, b))
    stats = {"status": {}, "cache": {}, "requests": 0}

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        for n in queue:
            writer.write(request_bytes(args.path.replace("{id}", make_id(n))))
            status, headers, _ = await read_response(reader)
            stats["requests"] += 1
            s = str(status)
            stats["status"][s] = stats["status"].get(s, 0) + 1
            c = headers.get("x-cache-status", "-")
            stats["cache"][c] = stats["cache"].get(c, 0) + 1
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", args.port)
        writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.c)))
    stats["seconds"] = round(time.monotonic() - t0, 3)
    return stats


async def scan(args):
    a, b = (int(x) for x in args.ids.split(":"))
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
    hits = 0
    stop = None
    t0 = time.monotonic()
    for n in range(b - 1, a - 1, -1):
        writer.write(request_bytes(args.path.replace("{id}", make_id(n))))
        status, headers, _ = await read_response(reader)
        if status != 200 or headers.get("x-cache-status") != "HIT":
            stop = {"id": n, "status": status,
                    "cache": headers.get("x-cache-status")}
            break
        hits += 1
        if headers.get("connection", "").lower() == "close":
            writer.close()
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", args.port)
    writer.close()
    return {"hits": hits, "first_miss": stop,
            "seconds": round(time.monotonic() - t0, 3)}


async def waiters(args):
    path = args.path.replace("{id}", args.id)
    req = request_bytes(path, close=True)
    conns = []
    for _ in range(args.n):
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        writer.write(req)
        conns.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in conns))
    t_ready = time.monotonic()
    if args.ready:
        with open(args.ready + ".tmp", "w") as f:
            f.write("ready %f\n" % time.time())
        import os
        os.rename(args.ready + ".tmp", args.ready)

    async def one(reader, writer):
        try:
            status, headers, body = await asyncio.wait_for(
                read_response(reader), args.timeout)
        except Exception as e:                      # noqa: BLE001
            return 599, b"", time.time(), repr(e)
        writer.close()
        return status, body, time.time(), None

    results = await asyncio.gather(*(one(r, w) for r, w in conns))
    out = {"status": {}, "bodies": len({r[1] for r in results}),
           "certificates": sum(1 for r in results if r[1].startswith(
               b"-----BEGIN CERTIFICATE-----")),
           "done_epoch": [round(r[2], 3) for r in results],
           "errors": [r[3] for r in results if r[3]][:5],
           "ready_after": round(t_ready, 3)}
    for r in results:
        s = str(r[0])
        out["status"][s] = out["status"].get(s, 0) + 1
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["fill", "scan", "waiters"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--ids", default="0:0")
    p.add_argument("--id")
    p.add_argument("-c", type=int, default=16)
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--ready")
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    fn = {"fill": fill, "scan": scan, "waiters": waiters}[args.mode]
    print(json.dumps(asyncio.run(fn(args))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
