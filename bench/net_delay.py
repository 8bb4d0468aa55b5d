#!/usr/bin/env python3
"""A loopback TCP proxy that delays every chunk by a fixed one-way time: Redis as if
over a network, for measuring what a round trip more or less costs a worker.

    python bench/net_delay.py --listen 6391 --to 6390 --one-way-us 150 [--seconds 600]

The threads' wake-ups add to the delay asked for (docs/performance.md gives what a
PING took through it here), so a round trip costs about what it would to Redis in
another availability zone. Threads, not
asyncio: an event loop's timers wake in whole milliseconds (epoll). Byte order is kept
per direction. Listens on and connects to 127.0.0.1 only; exits after --seconds.
(Kernel alternatives, `tc netem`, need a module this machine does not have.)
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import socket
import sys
import threading
import time


def _forward(source: socket.socket, sink: socket.socket, delay_s: float) -> None:
    """Reads from source at once; a second thread writes each chunk delay_s later."""
    chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def write() -> None:
        while True:
            due, data = chunks.get()
            if not data:
                break
            time.sleep(max(0.0, due - time.perf_counter()))
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (sink, source):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=write, daemon=True).start()
    while True:
        try:
            data = source.recv(1 << 16)
        except OSError:
            data = b""
        chunks.put((time.perf_counter() + delay_s, data))
        if not data:
            return


def serve(listen_port: int, target_port: int, one_way_us: float, seconds: float) -> None:
    delay_s = one_way_us / 1e6
    server = socket.create_server(("127.0.0.1", listen_port))
    server.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client, _ = server.accept()
        except TimeoutError:
            continue
        upstream = socket.create_connection(("127.0.0.1", target_port))
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_forward, args=(source, sink, delay_s), daemon=True).start()
    server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=int, required=True, help="port to listen on (127.0.0.1)")
    parser.add_argument("--to", type=int, required=True, help="port of the Redis on 127.0.0.1")
    parser.add_argument("--one-way-us", type=float, default=150.0)
    parser.add_argument("--seconds", type=float, default=600.0, help="lifetime (bounded)")
    args = parser.parse_args()
    serve(args.listen, args.to, args.one_way_us, min(args.seconds, 3600.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
