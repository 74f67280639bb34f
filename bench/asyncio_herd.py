#!/usr/bin/env python3
"""Baseline for the benchmark: the original student asyncio herd design, kept deliberately naive.

One process per server:  python3 bench/asyncio_herd.py Hill --port-base 12000 [--config F] [--log F]

Faithful to the seed, not to our product:
  * peers are plain clients: any connection may send `AT ...` and it is believed (no auth);
  * every flooded update opens ONE NEW TCP CONNECTION per neighbour, writes one line, closes;
  * an accepted update goes to ALL neighbours (the sender included); the "already have it"
    check is what stops the flood;
  * WHATSAT answers the stored AT line plus a fixed, empty Places JSON (no provider).
Bench-only extra: `STATS` answers one line of counters, so the bench can count peer messages.
Standard library only.
"""
import argparse
import asyncio
import json
import re
import signal
import sys
import time

NAMES = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"]
LINKS = [("Hill", "Jaquez"), ("Hill", "Smith"), ("Singleton", "Jaquez"),
         ("Singleton", "Smith"), ("Singleton", "Campbell"), ("Smith", "Campbell")]
LOC_RE = re.compile(r"^[+-]\d+(\.\d+)?[+-]\d+(\.\d+)?$")
TIME_RE = re.compile(r"^\d+(\.\d+)?$")
PLACES = '{\n  "html_attributions": [],\n  "results": [],\n  "status": "OK"\n}'


def default_config(port_base):
    servers = {n: {"port": port_base + i, "neighbors": []} for i, n in enumerate(NAMES)}
    for a, b in LINKS:
        servers[a]["neighbors"].append(b)
        servers[b]["neighbors"].append(a)
    return servers


def time_ns(text):
    """Client time as integer ns, so the diff is exact (no float on 19 digits)."""
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def fmt_diff(ns):
    sign = "-" if ns < 0 else "+"
    return "%s%d.%09d" % (sign, abs(ns) // 1_000_000_000, abs(ns) % 1_000_000_000)


class Server:
    def __init__(self, name, servers, log):
        self.name = name
        self.servers = servers
        self.neighbors = sorted({n for n in servers[name]["neighbors"]} |
                                {n for n, s in servers.items() if name in s["neighbors"]})
        self.records = {}  # client -> (time_ns, AT line)
        self.log_file = open(log, "a") if log else None
        self.stats = {"client_lines": 0, "iamat": 0, "peer_msgs": 0, "accepted": 0,
                      "flood_sent": 0, "flood_errors": 0}

    def log(self, msg):
        if self.log_file:
            self.log_file.write("%.6f %s\n" % (time.time(), msg))

    def accept(self, client, t, at_line):
        """Store if strictly newer (ties: larger AT line wins, the same everywhere); flood if stored."""
        old = self.records.get(client)
        if old is not None and (old[0], old[1]) >= (t, at_line):
            return
        self.records[client] = (t, at_line)
        self.stats["accepted"] += 1
        for n in self.neighbors:
            asyncio.ensure_future(self.flood(n, at_line))

    async def flood(self, neighbor, at_line):
        # The seed's design: a fresh connection for every message.
        try:
            cfg = self.servers[neighbor]
            _, writer = await asyncio.open_connection(cfg.get("host", "127.0.0.1"), cfg["port"])
            writer.write((at_line + "\n").encode())
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            self.stats["flood_sent"] += 1
            self.log("FLOOD %s %s" % (neighbor, at_line))
        except OSError as e:
            self.stats["flood_errors"] += 1
            self.log("FLOOD-ERROR %s %s" % (neighbor, e))

    def handle_line(self, line):
        """Returns the reply text, or None (peer messages and blank lines get none)."""
        f = line.split()
        if not f:
            return None
        if f[0] == "IAMAT" and len(f) == 4 and LOC_RE.match(f[2]) and TIME_RE.match(f[3]):
            self.stats["iamat"] += 1
            t = time_ns(f[3])
            at_line = "AT %s %s %s %s %s" % (self.name, fmt_diff(time.time_ns() - t), f[1], f[2], f[3])
            self.accept(f[1], t, at_line)
            return at_line + "\n"
        if f[0] == "AT" and len(f) == 6 and TIME_RE.match(f[5]):
            self.stats["peer_msgs"] += 1
            self.accept(f[3], time_ns(f[5]), " ".join(f))
            return None
        if f[0] == "WHATSAT" and len(f) == 4 and f[1] in self.records:
            return self.records[f[1]][1] + "\n" + PLACES + "\n\n"
        if f[0] == "STATS" and len(f) == 1:
            return "STATS %s %s\n" % (self.name, json.dumps(self.stats, separators=(",", ":")))
        return "? %s\n" % line.strip()

    async def handle_client(self, reader, writer):
        try:
            while True:
                data = await reader.readline()
                if not data:
                    break
                line = data.decode(errors="replace")
                self.stats["client_lines"] += 1
                self.log("IN %r" % line)
                reply = self.handle_line(line)
                if reply is not None:
                    writer.write(reply.encode())
                    await writer.drain()
                    self.log("OUT %r" % reply)
        except (OSError, ValueError) as e:  # ValueError: line over the stream limit
            self.log("ERROR %s" % e)
        finally:
            writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--port-base", type=int, default=12000)
    ap.add_argument("--config", help='JSON {"servers": {...}} as in PROTOCOL.md')
    ap.add_argument("--log", help="log file (off by default: it would dominate the bench)")
    args = ap.parse_args()
    if args.config:
        with open(args.config) as fh:
            servers = json.load(fh)["servers"]
    else:
        servers = default_config(args.port_base)
    if args.name not in servers:
        sys.exit("unknown server %s" % args.name)
    server = Server(args.name, servers, args.log)
    cfg = servers[args.name]
    srv = await asyncio.start_server(server.handle_client, cfg.get("host", "127.0.0.1"),
                                     cfg["port"], backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print("READY %s %d" % (args.name, cfg["port"]), flush=True)
    async with srv:
        await stop.wait()
    print("STATS %s %s" % (args.name, json.dumps(server.stats)), file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
