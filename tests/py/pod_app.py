"""A pod's application for the traffic-capture tests: opens one connection the way an
application would (the pod's iptables send it to its sidecar) and prints what came back.

usage: pod_app.py tcp  HOST:PORT               prints the first line the server sends
       pod_app.py tls  HOST:PORT SNI CA_FILE   the same over TLS with SNI, verifying the
                                               server as SNI against CA_FILE
       pod_app.py http HOST:PORT HOST_HEADER   prints the status code, then the body

Prints `error: KIND: DETAIL` (and exits 0) when the connection fails or is closed.
"""

import socket
import ssl
import sys


def read_all(s):
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk


def main():
    mode, dest = sys.argv[1], sys.argv[2]
    host, port = dest.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=3)
    if mode == "tls":
        ctx = ssl.create_default_context(cafile=sys.argv[4])
        s = ctx.wrap_socket(s, server_hostname=sys.argv[3])
    if mode in ("tcp", "tls"):
        line = s.recv(256).decode(errors="replace").strip()
        print(line if line else "error: closed: no data")
        return
    request = f"GET / HTTP/1.1\r\nHost: {sys.argv[3]}\r\nConnection: close\r\n\r\n"
    s.sendall(request.encode())
    head, _, body = read_all(s).partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode() if head else "error: closed: no response"
    print(status)
    print(body.decode(errors="replace"))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the test reads the failure from stdout
        print(f"error: {type(e).__name__}: {e}")
