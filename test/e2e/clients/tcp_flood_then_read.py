"""
A plain-TCP MQTT 5.0 device that reads like the Eclipse Paho test client (one packet at a time,
answering each PUBREC with a PUBREL before reading on): it sends more QoS 2 PUBLISHes than the
server accepts (its Receive Maximum or publish rate), waits for the server to close, then reads
until DISCONNECT. Prints "disconnect 0x.." or the error it hit.

usage: tcp_flood_then_read.py host port client_id count
"""
import select
import socket
import struct
import sys

host, port, client_id, count = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])


def packet(first, body):
    n, length = len(body), b""
    while True:
        byte, n = n % 128, n // 128
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            return bytes([first]) + length + body


def utf8(b):
    return struct.pack("!H", len(b)) + b


def read_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("connection closed before DISCONNECT")
        out += chunk
    return out


def read_packet(sock):
    first = read_exact(sock, 1)[0]
    length, mult = 0, 1
    while True:
        b = read_exact(sock, 1)[0]
        length += (b & 127) * mult
        mult *= 128
        if b < 128:
            break
    return first >> 4, read_exact(sock, length)


sock = socket.create_connection((host, port), timeout=10)
sock.sendall(packet(0x10, utf8(b"MQTT") + bytes([5, 0x02]) + struct.pack("!H", 60) + b"\x00" + utf8(client_id)))
kind, _ = read_packet(sock)
assert kind == 2, "expected CONNACK"
flood = b"".join(packet(0x34, utf8(b"flood/x") + struct.pack("!H", i) + b"\x00" + b"m") for i in range(1, count + 1))
sock.sendall(flood)
# Read only once the bridge has shut its side (FIN seen, POLLRDHUP), as a slow device would: the
# PUBRELs are then written after the broker closed, which is the case that matters.
poller = select.poll()
poller.register(sock, select.POLLRDHUP)
if not poller.poll(10000):
    print("error: the connection was not closed")
    sys.exit(0)
try:
    while True:
        kind, body = read_packet(sock)
        if kind == 5:  # PUBREC: release it, as Paho's client does
            sock.sendall(packet(0x62, body[:2]))
        elif kind == 14:
            print("disconnect 0x%02x" % body[0])
            break
except Exception as err:  # noqa: BLE001 - the outcome is what we report
    print("error %s: %s" % (type(err).__name__, err))
