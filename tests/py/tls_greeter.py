"""A TLS server that greets each connection with its name and a newline, then closes it:
an external HTTPS/TLS API for the egress tests.

usage: tls_greeter.py NAME ADDRESS PORT CERT_FILE KEY_FILE
"""

import socket
import ssl
import sys
import threading


def serve(conn, ctx, name):
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(f"{name}\n".encode())
    except (OSError, ssl.SSLError):
        pass


def main():
    name, address, port, cert, key = sys.argv[1:6]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server((address, int(port)))
    while True:
        conn, _ = listener.accept()
        conn.settimeout(5)
        threading.Thread(target=serve, args=(conn, ctx, name), daemon=True).start()


if __name__ == "__main__":
    main()
