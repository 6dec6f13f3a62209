"""The address guard: a webhook's URL is checked when it is registered, and its host's addresses at every attempt
(after DNS), so that deliveries never reach loopback, private, link-local or multicast addresses unless
WEBHOOK_ALLOWED_HOSTS lets the host in.

Imports nothing of ours; its errors are werkzeug HTTP exceptions (a bad URL) and RefusedAddress.
"""

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address
from urllib.parse import SplitResult, urlsplit

from werkzeug.exceptions import BadRequest

MAX_URL_CHARACTERS = 2048


class RefusedAddress(Exception):
    """A receiver's host that resolves to nothing, or to an address deliveries may not go to."""


def refusal(address: IPv4Address | IPv6Address) -> str | None:
    """What kind of address deliveries may not go to this one is (loopback, private, ...), or None: it is public."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"


def resolve(host: str, port: int) -> list[str]:
    """Every address a host resolves to; RefusedAddress if it resolves to none, or to one deliveries may not go to."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise RefusedAddress(f"{host} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))
    for address in addresses:
        if (kind := refusal(ip_address(address))) is not None:
            named = host if host == address else f"{host} resolves to {address}, which"
            raise RefusedAddress(f"{named} is a {kind} address")
    return addresses


def parse_url(url: str) -> SplitResult:
    """The parts of a webhook's URL; 400 saying what is wrong with it."""
    if len(url) > MAX_URL_CHARACTERS:
        raise BadRequest(f"'url' must be at most {MAX_URL_CHARACTERS} characters long")
    if any(character.isspace() or not character.isprintable() for character in url):
        raise BadRequest("'url' must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest(f"'url' must be an http:// or https:// URL, not {url[:100]!r}")
    try:
        port_of(parts)
    except ValueError:
        raise BadRequest(f"'url' has an invalid port: {url[:100]!r}") from None
    if not parts.hostname:
        raise BadRequest(f"'url' has no host: {url[:100]!r}")
    if parts.username is not None or parts.password is not None:
        raise BadRequest("'url' must not carry a user name or password: deliveries are signed, verify the signature")
    if parts.fragment:
        raise BadRequest("'url' must not have a #fragment")
    return parts


def port_of(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)
