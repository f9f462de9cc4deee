"""A proxyless gRPC client with xDS security: `xds:///HOST:PORT` through shoal, TLS as the
clusters say (certificates from the bootstrap's `default` certificate provider).

usage: xds_mtls_client.py TARGET N [TIMEOUT_SECONDS]

Prints one JSON line: the answers of N calls; on the first failure, prints
`{"error": CODE, "details": ...}` to stderr and exits 1. Needs GRPC_XDS_BOOTSTRAP.
"""

import collections
import json
import sys

import grpc
import grpc.experimental


def main():
    target, n = sys.argv[1], int(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 20
    # Plaintext only where the control plane sends no TLS for a cluster.
    creds = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
    with grpc.secure_channel(target, creds) as channel:
        who = channel.unary_unary("/echo.Echo/Who")
        answers = collections.Counter()
        for _ in range(n):
            try:
                answers[who(b"", timeout=timeout, wait_for_ready=True).decode()] += 1
            except grpc.RpcError as e:
                print(json.dumps({"error": e.code().name, "details": e.details()}), file=sys.stderr, flush=True)
                return 1
        print(json.dumps(answers), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
