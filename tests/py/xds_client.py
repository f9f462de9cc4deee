"""A proxyless gRPC client: gRPC's own xDS client resolves `xds:///HOST:PORT` through shoal.

usage: xds_client.py TARGET N HEADER=VALUE [UNTIL]

Prints, one JSON line each: the backends that answered N plain calls, and N/4 calls carrying
the header. Then prints READY and waits for a line on stdin; with UNTIL given, it then calls
in batches of 20 until a whole batch is answered by UNTIL and prints SHIFTED (exits 1 after
30 s). Needs GRPC_XDS_BOOTSTRAP.
"""

import collections
import json
import sys
import time

import grpc


def call(who, metadata=()):
    return who(b"", metadata=metadata, timeout=20, wait_for_ready=True).decode()


def main():
    target, n, header = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    until = sys.argv[4] if len(sys.argv) > 4 else None
    key, _, value = header.partition("=")
    with grpc.insecure_channel(target) as channel:
        who = channel.unary_unary("/echo.Echo/Who")
        print(json.dumps(collections.Counter(call(who) for _ in range(n))), flush=True)
        print(json.dumps(collections.Counter(call(who, ((key, value),)) for _ in range(max(n // 4, 1)))), flush=True)
        print("READY", flush=True)
        sys.stdin.readline()
        if until is None:
            return 0
        deadline = time.time() + 30
        while time.time() < deadline:
            if all(call(who) == until for _ in range(20)):
                print("SHIFTED", flush=True)
                return 0
            time.sleep(0.1)
        print("did not shift", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
