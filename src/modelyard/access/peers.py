"""Who is on the other end of a loopback connection: the OS user owning the peer's socket.

SPEC §12's local trust. On Linux the kernel knows the owner of every TCP socket of this
network namespace. The client's own socket is the one whose local address is the client's
address and port and whose remote address is ours: a lookup names the connection's whole
four-tuple, every time, never a port alone (a port a trusted user has just closed can be bound
by another user a moment later).

The kernel is asked through sock_diag (netlink), which finds one socket by its four-tuple in
microseconds. ``/proc/net/tcp`` and ``tcp6`` list the same owners, but reading them walks the
kernel's whole connection table: 10 ms a read on this machine, too slow for every request,
so they are read only where sock_diag is missing. Anything that cannot be told (another OS, a
socket that is already gone) answers ``None``, and the caller asks for a key.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

_TABLES: dict[int, Path] = {
    socket.AF_INET: Path("/proc/net/tcp"),
    socket.AF_INET6: Path("/proc/net/tcp6"),
}
_UID_FIELD = 7  # sl, local, remote, st, queues, tr, retrnsmt, uid, …

# linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NLMSG_HEADER = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then the inet_diag_sockid:
# sport, dport (big-endian), src[16], dst[16], interface, cookie (two words).
_DIAG_HEAD = struct.Struct("=BBBxI")
_DIAG_PORTS = struct.Struct(">HH")
_DIAG_TAIL = struct.Struct("=III")
_NO_COOKIE = 0xFFFFFFFF
# inet_diag_msg: family, state, timer, retrans, the 48-byte sockid, expires, rqueue, wqueue,
# uid, inode.
_DIAG_UID = struct.Struct("=I")
_DIAG_UID_OFFSET = 4 + 48 + 12

Endpoint = tuple[str, int]


def loopback_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as a loopback address (an IPv4-mapped one unwrapped), else None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address if address.is_loopback else None


def socket_owner(client: Endpoint, server: Endpoint) -> int | None:
    """The uid owning the client's end of the TCP connection ``client`` → ``server``."""
    try:
        clients, servers = _spellings(client[0]), dict(_spellings(server[0]))
    except OSError:  # not an IP address (a Unix socket, a test transport)
        return None
    candidates = [
        (family, (host, client[1]), (servers[family], server[1]))
        for family, host in clients
        if family in servers
    ]
    try:
        return _ask_kernel(candidates)
    except OSError:  # no netlink (another OS) or no sock_diag in this kernel
        return _read_tables(candidates)


def _spellings(host: str) -> list[tuple[int, str]]:
    """The (family, address) pairs a socket of ``host`` may be known under.

    Plain string work: ``ipaddress`` would cost more than the kernel's answer."""
    mapped = host.lower().removeprefix("::ffff:")
    if ":" in mapped:
        socket.inet_pton(socket.AF_INET6, host)  # OSError when it is not an address
        return [(socket.AF_INET6, host)]
    socket.inet_pton(socket.AF_INET, mapped)
    # An IPv4 peer has an IPv4 socket, or an IPv6 one speaking to a mapped address.
    return [(socket.AF_INET, mapped), (socket.AF_INET6, f"::ffff:{mapped}")]


def _ask_kernel(candidates: list[tuple[int, Endpoint, Endpoint]]) -> int | None:
    family = getattr(socket, "AF_NETLINK", None)
    if family is None:
        raise OSError("no netlink on this system")
    with socket.socket(family, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as sock:
        for seq, (family, local, remote) in enumerate(candidates, start=1):
            request = b"".join(
                (
                    _DIAG_HEAD.pack(family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF),  # any state
                    _DIAG_PORTS.pack(local[1], remote[1]),
                    socket.inet_pton(family, local[0]).ljust(16, b"\0"),
                    socket.inet_pton(family, remote[0]).ljust(16, b"\0"),
                    _DIAG_TAIL.pack(0, _NO_COOKIE, _NO_COOKIE),  # any interface, no cookie
                )
            )
            header = _NLMSG_HEADER.pack(
                _NLMSG_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, seq, 0
            )
            sock.send(header + request)
            answer = sock.recv(8192)
            _, kind, _, _, _ = _NLMSG_HEADER.unpack_from(answer)
            if kind == _NLMSG_ERROR:  # no such socket in this family
                continue
            return int(_DIAG_UID.unpack_from(answer, _NLMSG_HEADER.size + _DIAG_UID_OFFSET)[0])
    return None


def _read_tables(candidates: list[tuple[int, Endpoint, Endpoint]]) -> int | None:
    for family, local, remote in candidates:
        needle = f" {_hex_address(family, *local)} {_hex_address(family, *remote)} "
        try:
            table = _TABLES[family].read_text()
        except OSError:  # not Linux, or /proc is not mounted
            return None
        start = table.find(needle)
        if start < 0:
            continue
        line = table[table.rfind("\n", 0, start) + 1 : table.find("\n", start)]
        fields = line.split()
        if len(fields) > _UID_FIELD and fields[_UID_FIELD].isdigit():
            return int(fields[_UID_FIELD])
    return None


def _hex_address(family: int, host: str, port: int) -> str:
    """``host:port`` as /proc/net/tcp* prints it: the address's 32-bit words in host order."""
    packed = socket.inet_pton(family, host)
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"
