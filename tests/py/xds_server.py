"""A proxyless gRPC server with xDS security: it serves `/echo.Echo/Who` (answering NAME)
on 0.0.0.0:PORT as the listener shoal sends for it says (TLS, authorization).

usage: xds_server.py PORT NAME

Prints STARTED once listening (gRPC serves only after its listener arrived), then runs
until killed. Needs GRPC_XDS_BOOTSTRAP with server_listener_resource_name_template.
"""

import sys
from concurrent import futures

import grpc
import grpc.experimental


def main():
    port, name = int(sys.argv[1]), sys.argv[2].encode()
    handler = grpc.method_handlers_generic_handler(
        "echo.Echo", {"Who": grpc.unary_unary_rpc_method_handler(lambda request, context: name)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
    server.add_generic_rpc_handlers((handler,))
    # Plaintext only where the control plane's listener asks for no TLS.
    creds = grpc.xds_server_credentials(grpc.insecure_server_credentials())
    server.add_secure_port(f"0.0.0.0:{port}", creds)
    server.start()
    print("STARTED", flush=True)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
