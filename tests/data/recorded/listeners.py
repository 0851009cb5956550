"""Listening sockets of several shapes for record_netns.sh (run inside its namespace)."""

import socket
import time

socks = []
for family, addr, port, kind in [
    (socket.AF_INET, "0.0.0.0", 8080, socket.SOCK_STREAM),
    (socket.AF_INET6, "::", 2222, socket.SOCK_STREAM),
    (socket.AF_INET, "10.98.250.1", 5353, socket.SOCK_DGRAM),
    (socket.AF_INET6, "fd98:250::1", 5354, socket.SOCK_DGRAM),
]:
    s = socket.socket(family, kind)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    if kind == socket.SOCK_STREAM:
        s.listen()
    socks.append(s)
bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
bound.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
bound.bind(("0.0.0.0", 9090))
bound.listen()
socks.append(bound)
dual = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
dual.bind(("::", 7070))
dual.listen()
socks.append(dual)
time.sleep(20)
