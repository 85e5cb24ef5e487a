"""The egress proxy of Spaceport's build network: the one way out of a build's RUN steps.

RUN steps run on an internal Docker network with no route anywhere; this proxy sits on that
network and on Docker's default bridge. It speaks HTTP CONNECT (for https: pip, apt over
https) and plain absolute-form HTTP (apt's http mirrors), and lets a request through only
when

* the host is on the allow-list (exact names, or `*.suffix` for a domain and its subdomains),
* the port is an allowed one (80 and 443 by default), and
* every address the name resolves to is outside the blocked networks (loopback, private,
  link-local/metadata, ...). The proxy connects to the address it checked, so a name that
  resolves differently a moment later (DNS rebinding) cannot sneak a local address in.

Standard library only: it runs unchanged on Spaceport's Python base image and in unit tests.
Configured by environment: SPACEPORT_PROXY_ALLOW (comma-separated hosts),
SPACEPORT_PROXY_BLOCK (comma-separated CIDRs), SPACEPORT_PROXY_PORTS, SPACEPORT_PROXY_LISTEN.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 20.0
IDLE_TIMEOUT_S = 300.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The request may not go out; the message says why (it ends up in pip's/apt's error)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Policy:
    allowed_hosts: tuple[str, ...]
    blocked_networks: tuple[Network, ...]
    allowed_ports: frozenset[int] = frozenset({80, 443})

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for entry in self.allowed_hosts:
            entry = entry.lower().rstrip(".")
            if entry.startswith("*."):
                if host == entry[2:] or host.endswith(entry[1:]):
                    return True
            elif host == entry:
                return True
        return False

    def address_blocked(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.blocked_networks)

    def check(self, host: str, port: int, addresses: Sequence[str]) -> str:
        """The address to connect to, or Refused."""
        if not self.host_allowed(host):
            raise Refused(403, f"Spaceport build proxy: {host} is not an allowed package host")
        if port not in self.allowed_ports:
            raise Refused(403, f"Spaceport build proxy: port {port} is not allowed")
        if not addresses:
            raise Refused(502, f"Spaceport build proxy: {host} does not resolve")
        for text in addresses:
            if self.address_blocked(ipaddress.ip_address(text.split("%", 1)[0])):
                raise Refused(
                    403, f"Spaceport build proxy: {host} resolves to a local address ({text})"
                )
        return addresses[0]


def policy_from_env(env: dict[str, str]) -> Policy:
    split = [p.strip() for p in env.get("SPACEPORT_PROXY_ALLOW", "").split(",") if p.strip()]
    blocks = [p.strip() for p in env.get("SPACEPORT_PROXY_BLOCK", "").split(",") if p.strip()]
    ports = [p.strip() for p in env.get("SPACEPORT_PROXY_PORTS", "80,443").split(",") if p.strip()]
    return Policy(
        tuple(split),
        tuple(ipaddress.ip_network(b, strict=False) for b in blocks),
        frozenset(int(p) for p in ports),
    )


async def resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def split_host_port(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):  # [v6]:port
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif authority.count(":") == 1:
        host, _, port = authority.partition(":")
    else:
        host, port = authority, ""
    if not host or any(c in host for c in "@/\\ "):
        raise Refused(400, "Spaceport build proxy: malformed host")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise Refused(400, "Spaceport build proxy: malformed port") from None


class ProxyServer:
    def __init__(self, policy: Policy, log: Callable[[str], None] = print) -> None:
        self.policy = policy
        self.log = log

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handle(reader, writer)
        except Refused as refused:
            self.log(f"refused: {refused.reason}")
            body = (refused.reason + "\n").encode()
            head = (
                f"HTTP/1.1 {refused.status} {refused.reason}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1", "replace") + body)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            try:
                await writer.drain()
                writer.close()
            except OSError:
                pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT_S)
        if len(head) > MAX_HEADER_BYTES:
            raise Refused(431, "Spaceport build proxy: request header too large")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise Refused(400, "Spaceport build proxy: malformed request line")
        method, target, version = parts
        if method == "CONNECT":
            host, port = split_host_port(target, 443)
            address = await self._check(host, port)
            upstream_reader, upstream_writer = await self._open(address, port)
            self.log(f"CONNECT {host}:{port} -> {address}")
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await self._pipe(reader, writer, upstream_reader, upstream_writer)
            return
        if not target.lower().startswith("http://"):
            raise Refused(400, "Spaceport build proxy: only http:// URLs and CONNECT are proxied")
        rest = target[len("http://") :]
        authority, slash, path = rest.partition("/")
        host, port = split_host_port(authority, 80)
        address = await self._check(host, port)
        upstream_reader, upstream_writer = await self._open(address, port)
        self.log(f"{method} http://{host}:{port}/ -> {address}")
        headers = [
            line
            for line in lines[1:]
            if line and not line.lower().startswith(("proxy-", "connection:", "keep-alive:"))
        ]
        request = [f"{method} {slash}{path or ''} {version}", *headers, "Connection: close", "", ""]
        if not slash:
            request[0] = f"{method} / {version}"
        upstream_writer.write("\r\n".join(request).encode("latin-1"))
        await self._pipe(reader, writer, upstream_reader, upstream_writer)

    async def _check(self, host: str, port: int) -> str:
        if not self.policy.host_allowed(host):
            self.policy.check(host, port, [])  # raises the "not allowed" refusal
        try:
            addresses = await resolve(host, port)
        except OSError:
            addresses = []
        return self.policy.check(host, port, addresses)

    async def _open(
        self, address: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(asyncio.open_connection(address, port), CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            raise Refused(502, f"Spaceport build proxy: cannot reach {address}:{port}") from exc

    async def _pipe(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await asyncio.wait_for(src.read(65536), IDLE_TIMEOUT_S)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            except (TimeoutError, OSError):
                pass
            finally:
                try:
                    if dst.can_write_eof():
                        dst.write_eof()
                except OSError:
                    pass

        await asyncio.gather(
            copy(client_reader, upstream_writer), copy(upstream_reader, client_writer)
        )
        upstream_writer.close()


async def serve(policy: Policy, host: str, port: int) -> None:
    server = ProxyServer(policy, log=lambda line: print(line, flush=True))
    listener = await asyncio.start_server(server.handle, host, port, limit=MAX_HEADER_BYTES)
    print(f"listening on {host}:{port}; allowed: {', '.join(policy.allowed_hosts)}", flush=True)
    async with listener:
        await listener.serve_forever()


def main(argv: list[str]) -> None:
    policy = policy_from_env(dict(os.environ))
    host, _, port = os.environ.get("SPACEPORT_PROXY_LISTEN", "0.0.0.0:3128").rpartition(":")
    asyncio.run(serve(policy, host, int(port)))


if __name__ == "__main__":
    main(sys.argv[1:])
