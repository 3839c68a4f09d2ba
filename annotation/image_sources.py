"""Reading image bytes from where a manifest line points: a local path, s3://bucket/key, or a URL.

Every reader raises `ImageSourceError` with a message that says what was wrong; nothing here
writes anything.
"""
import http.client
import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection

from core.s3 import s3_client_cached


class ImageSourceError(Exception):
    pass


@dataclass(frozen=True)
class SourcePolicy:
    """Where a given import may read from.

    `images_root`: relative paths resolve under it and no path may leave it. With
    `absolute_paths_anywhere` (the command line without --images-root), absolute paths are read
    as given; the API never sets it. `s3_root` ("s3://bucket/prefix/", from `s3_root_normalise`)
    makes relative paths keys under that prefix instead, and no path may leave it.
    """

    images_root: Path | None
    absolute_paths_anywhere: bool = False
    s3_root: str = ""
    allow_private_urls: bool = False
    max_bytes: int = 50 * 1024 * 1024
    url_timeout_s: float = 20.0  # one connect or read
    url_deadline_s: float = 20.0  # the whole fetch, redirects included

    @classmethod
    def from_settings(cls, *, images_root: Path | None, absolute_paths_anywhere: bool = False,
                      s3_root: str = "") -> "SourcePolicy":
        return cls(
            images_root=images_root.resolve() if images_root else None,
            absolute_paths_anywhere=absolute_paths_anywhere,
            s3_root=s3_root,
            allow_private_urls=settings.IMPORT_ALLOW_PRIVATE_URLS,
            max_bytes=settings.IMPORT_MAX_BYTES,
            url_timeout_s=settings.IMPORT_URL_TIMEOUT_S,
            url_deadline_s=settings.IMPORT_URL_DEADLINE_S,
        )


def read_image_source(ref: str, policy: SourcePolicy) -> bytes:
    if ref.startswith("s3://"):
        return _read_s3(ref, policy)
    scheme = urlsplit(ref).scheme.lower()
    if scheme in ("http", "https"):
        return _read_url(ref, policy)
    if scheme and len(scheme) > 1:  # "c:" would be a drive letter, anything longer a scheme
        raise ImageSourceError(f"unsupported scheme {scheme!r}: use a path, s3:// or http(s)://")
    if policy.s3_root:
        return _read_s3(s3_ref_under_root(ref, policy.s3_root), policy)
    return _read_path(ref, policy)


_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def s3_root_normalise(root: str) -> str:
    """`s3://bucket` or `s3://bucket/prefix` as "s3://bucket/prefix/" (ending in "/"); raises
    ImageSourceError for anything else."""
    bucket, _, prefix = root.removeprefix("s3://").partition("/") if root.startswith("s3://") else ("", "", "")
    if not _S3_BUCKET.fullmatch(bucket):
        raise ImageSourceError(f"{root!r} is not an S3 prefix: expected s3://bucket/prefix/")
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ImageSourceError(f"S3 prefix {root!r} has an empty, '.' or '..' segment")
    return f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"


def s3_ref_under_root(ref: str, root: str) -> str:
    """The s3:// reference that relative path `ref` names under S3 prefix `root`; a path that
    would leave the prefix (absolute, or with a '..' segment) is refused."""
    parts = ref.replace("\\", "/").split("/")
    if ref.startswith("/") or any(part in (".", "..") for part in parts) or "" in parts:
        raise ImageSourceError(f"path {ref!r} is outside the S3 prefix")
    return root + ref


def local_path_for(ref: str, policy: SourcePolicy) -> Path:
    """The file a path reference names, refusing any path that leaves the images root."""
    raw = Path(ref)
    if raw.is_absolute():
        path = raw.resolve()
        if policy.absolute_paths_anywhere:
            return path
    else:
        if policy.images_root is None:
            raise ImageSourceError("relative path given but no images root is set")
        path = (policy.images_root / raw).resolve()
    if policy.images_root is None or not path.is_relative_to(policy.images_root):
        raise ImageSourceError(f"path {ref!r} is outside the images root")
    return path


def _read_path(ref: str, policy: SourcePolicy) -> bytes:
    path = local_path_for(ref, policy)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageSourceError(f"file not found: {ref}") from None
    except OSError as exc:
        raise ImageSourceError(f"cannot read {ref}: {exc.strerror}") from None
    if not path.is_file():
        raise ImageSourceError(f"not a regular file: {ref}")
    if size > policy.max_bytes:
        raise ImageSourceError(f"file is {size} bytes, over the {policy.max_bytes}-byte limit")
    return path.read_bytes()


def _read_s3(ref: str, policy: SourcePolicy) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = ref[len("s3://"):].partition("/")
    if not bucket or not key:
        raise ImageSourceError(f"malformed S3 reference {ref!r}: expected s3://bucket/key")
    client = s3_client_cached()
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] > policy.max_bytes:
            raise ImageSourceError(f"object is {head['ContentLength']} bytes, over the {policy.max_bytes}-byte limit")
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise ImageSourceError(f"S3 object not found: {ref}") from None
        if code == "NoSuchBucket":
            raise ImageSourceError(f"S3 bucket not found: {bucket}") from None
        raise ImageSourceError(f"S3 error for {ref}: {code or exc}") from None
    except BotoCoreError as exc:
        raise ImageSourceError(f"S3 error for {ref}: {exc}") from None


def _forbidden_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    for attr, name in (("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_private", "private"),
                       ("is_multicast", "multicast"), ("is_reserved", "reserved"), ("is_unspecified", "unspecified")):
        if getattr(ip, attr):
            return name
    return None


def _resolve_checked(host: str, port: int, policy: SourcePolicy) -> str:
    """Resolve `host` once and return the address to connect to, refusing internal addresses.

    Connecting to the checked address (not resolving again) closes the DNS-rebinding gap.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ImageSourceError(f"cannot resolve host {host!r}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not policy.allow_private_urls:
        for ip in addresses:
            kind = _forbidden_address(ip)
            if kind:
                raise ImageSourceError(f"URL host {host} resolves to {kind} address {ip}, which imports may not fetch")
    return str(addresses[0])


class _Watchdog:
    """Shuts a connection's socket once the fetch's deadline passes. A socket timeout bounds one
    read only: a server that drips a byte now and then would hold the fetch forever, and
    shutting the socket is what wakes a read blocked in another thread."""

    def __init__(self, connection: HTTPConnection, seconds: float):
        self.connection = connection
        self.expired = threading.Event()
        self.timer = threading.Timer(seconds, self._cut)
        self.timer.daemon = True

    def _cut(self) -> None:
        self.expired.set()
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc_info):
        self.timer.cancel()


def _read_url(ref: str, policy: SourcePolicy, redirects_left: int = 3, deadline: float | None = None) -> bytes:
    """The body of `ref`, within policy.url_deadline_s seconds in all (redirects included)."""
    if deadline is None:
        deadline = time.monotonic() + policy.url_deadline_s
    too_slow = ImageSourceError(f"fetching {ref} took longer than {policy.url_deadline_s:g} s "
                                f"(IMPORT_URL_DEADLINE_S)")
    parts = urlsplit(ref)
    if not parts.hostname:
        raise ImageSourceError(f"URL without a host: {ref!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _resolve_checked(parts.hostname, port, policy)
    left = deadline - time.monotonic()
    if left <= 0:
        raise too_slow
    timeout = min(policy.url_timeout_s, left)  # each connect and read; the watchdog bounds them all
    if parts.scheme == "https":
        connection = HTTPSConnection(address, port, timeout=timeout, server_hostname=parts.hostname,
                                     assert_hostname=parts.hostname)
    else:
        connection = HTTPConnection(address, port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    location = None
    try:
        with _Watchdog(connection, left) as watchdog:
            connection.request("GET", path, headers={"Host": host_header, "User-Agent": "prefstudio-import"},
                               preload_content=False)
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location or redirects_left == 0:
                    raise ImageSourceError(f"too many or empty redirects from {ref}")
            elif response.status != 200:
                raise ImageSourceError(f"URL answered HTTP {response.status}: {ref}")
            else:
                body = response.read(policy.max_bytes + 1)
        # A body cut short by the watchdog may read as complete (no Content-Length): check first.
        if watchdog.expired.is_set():
            raise too_slow
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
        if watchdog.expired.is_set():
            raise too_slow from None
        raise ImageSourceError(f"cannot fetch {ref}: {exc.__class__.__name__}") from None
    finally:
        connection.close()
    if location is not None:
        return _read_url(urljoin(ref, location), policy, redirects_left - 1, deadline)
    if len(body) > policy.max_bytes:
        raise ImageSourceError(f"URL body is over the {policy.max_bytes}-byte limit: {ref}")
    return body
