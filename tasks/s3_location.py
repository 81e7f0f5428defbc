"""An S3 bucket + prefix resolved from a StorageTarget, and boto3 clients that talk to it.

Replication speaks boto3 directly (not fsspec): listing, ranged streaming and multipart need
the raw API, and one thread-safe client per endpoint serves a whole batch's worker pool.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from blocks import StorageTarget
from blocks.storage_target import S3_PROTOCOLS
from tasks.errors import ConfigurationError
from tasks.opaque_etags import WHY as OPAQUE_WHY
from tasks.opaque_etags import bucket_default_opaque

DEFAULT_REGION = "us-east-1"

_session_lock = threading.Lock()
_session: boto3.session.Session | None = None
_clients: OrderedDict[tuple, Any] = OrderedDict()  # shared clients, most recently used last
CLIENT_CACHE_SIZE = 32


def _client_from_shared_session(**kwargs: Any) -> Any:
    """Clients from one boto3 session per process: its loader parses botocore's S3 model and
    endpoint rules once (~0.15 s of JSON here), where a new session per client parsed them for
    every client, about 1 s of a small replication run. Creating clients from one session is not
    thread-safe, so creation is serialised; the clients themselves are thread-safe. Credentials and
    region are always passed explicitly, so the shared session's own configuration never applies."""
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", **kwargs)


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix`` at one endpoint. ``prefix`` is '' or ends with '/'."""

    label: str
    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region_name: str = DEFAULT_REGION
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def store_id(self) -> str:
        """Which store this is: two locations with the same store_id share one bucket namespace."""
        return f"{(self.endpoint_url or 'aws').rstrip('/')}|{self.bucket}"

    def full_key(self, relative_key: str) -> str:
        return self.prefix + relative_key

    def relative_key(self, full_key: str) -> str:
        return full_key[len(self.prefix):]

    def with_prefix(self, sub_prefix: str) -> S3Location:
        """This location narrowed to ``sub_prefix`` (relative to its prefix)."""
        sub = sub_prefix.strip("/")
        if not sub:
            return self
        if ".." in sub.split("/"):
            raise ConfigurationError(f"prefix {sub_prefix!r}: '..' is not allowed")
        return S3Location(
            self.label, self.bucket, f"{self.prefix}{sub}/", self.endpoint_url, self.region_name,
            self.access_key_id, self.secret_access_key, self.session_token,
        )

    def client(
        self,
        *,
        max_attempts: int = 8,
        max_pool_connections: int = 32,
        observer: Callable[..., Any] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
    ) -> Any:
        """A boto3 S3 client with adaptive retries (backoff + jitter, client-side rate limiting on
        throttling) and, optionally, an ``observer`` called on every retry decision.

        Without an observer the client is shared: the same location and settings get the same
        client (and its warm connections) for the life of the process. Creating one costs ~35 ms
        of CPU, and a replication run asked for six, a ``replicated_put`` one per region per call.
        Clients are thread-safe; one with an observer is always new, so a batch's retry figures
        never include another batch's."""
        if observer is None:
            key = (self.endpoint_url, self.region_name, self.access_key_id, self.secret_access_key, self.session_token,
                   max_attempts, max_pool_connections, connect_timeout, read_timeout)
            with _session_lock:
                if key in _clients:
                    _clients.move_to_end(key)
                    return _clients[key]
            client = self._new_client(max_attempts, max_pool_connections, connect_timeout, read_timeout)
            with _session_lock:
                client = _clients.setdefault(key, client)
                while len(_clients) > CLIENT_CACHE_SIZE:
                    _clients.popitem(last=False)
            return client
        client = self._new_client(max_attempts, max_pool_connections, connect_timeout, read_timeout)
        client.meta.events.register("needs-retry.s3", observer)
        return client

    def _new_client(self, max_attempts: int, max_pool_connections: int, connect_timeout: float, read_timeout: float) -> Any:
        return _client_from_shared_session(
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            config=Config(
                retries={"max_attempts": max_attempts, "mode": "adaptive"},
                max_pool_connections=max_pool_connections,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                # Bodies carry Content-MD5 (signed) when their MD5 is known up front; a body streamed
                # from a source written in parts cannot, and its destination ETag is checked against
                # our MD5 after the PUT. SigV4's payload SHA-256 (botocore does it on plain http)
                # would be a second pass over every byte, and impossible on a one-way stream.
                s3={"addressing_style": "path", "payload_signing_enabled": False},
                # Presigned URLs (the listing's) default to SigV2 in botocore, which AWS refuses
                # in every region opened since 2014; SigV4 works everywhere.
                signature_version="s3v4",
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )


def location_from_target(target: StorageTarget, label: str) -> S3Location:
    """Resolve a StorageTarget block into an S3Location; non-S3 targets are a configuration error."""
    if target.protocol not in S3_PROTOCOLS:
        raise ConfigurationError(
            f"storage-target/{label}: url {target.url!r} is not s3://; replication copies between S3 stores"
        )
    bucket, _, prefix = target.root.partition("/")
    prefix = prefix.strip("/")
    options = target.storage_options()
    client_kwargs = options.get("client_kwargs", {})
    return S3Location(
        label=label,
        bucket=bucket,
        prefix=f"{prefix}/" if prefix else "",
        endpoint_url=client_kwargs.get("endpoint_url"),
        region_name=client_kwargs.get("region_name") or DEFAULT_REGION,
        access_key_id=options.get("key"),
        secret_access_key=options.get("secret"),
        session_token=options.get("token"),
    )


def _status(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def check_reachable(location: S3Location) -> None:
    """Fail with a ConfigurationError naming the target when its bucket is missing or the
    credentials are refused; called before anything is copied or deleted."""
    client = location.client(max_attempts=3, connect_timeout=3, read_timeout=10)
    try:
        try:
            client.head_bucket(Bucket=location.bucket)
        except ClientError as exc:
            if _status(exc) != 403:
                raise
            # HeadBucket needs ListBucket on the whole bucket; a policy that allows listing only
            # under the prefix refuses it, and the listing the run needs is what decides.
            client.list_objects_v2(Bucket=location.bucket, Prefix=location.prefix, MaxKeys=1)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = _status(exc)
        if code in {"404", "NoSuchBucket"} or status == 404:
            raise ConfigurationError(
                f"storage-target/{location.label}: bucket {location.bucket!r} does not exist at "
                f"{location.endpoint_url or 'AWS'}"
            ) from None
        if code in {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"} or status == 403:
            raise ConfigurationError(
                f"storage-target/{location.label}: credentials refused for bucket {location.bucket!r} ({code or status})"
            ) from None
        raise
    except EndpointConnectionError as exc:
        raise ConfigurationError(f"storage-target/{location.label}: endpoint unreachable: {exc}") from None


def check_md5_etags(location: S3Location) -> None:
    """Refuse a bucket whose default encryption (SSE-KMS, DSSE-KMS) gives new objects ETags that
    are not MD5s: replication's checks could not hold for any of them. A store that does not say
    (no configuration, no permission, no such API) passes; each object is still checked."""
    client = location.client(max_attempts=3, connect_timeout=3, read_timeout=10)
    try:
        answer = client.get_bucket_encryption(Bucket=location.bucket)
    except ClientError:
        return
    algorithm = bucket_default_opaque(answer.get("ServerSideEncryptionConfiguration") or {})
    if algorithm:
        raise ConfigurationError(
            f"storage-target/{location.label}: bucket {location.bucket!r} encrypts new objects with {algorithm} "
            f"by default; {OPAQUE_WHY}"
        )


def check_quarantine(locations: list[S3Location], quarantine_prefix: str | None) -> None:
    """Deleted objects move under the quarantine prefix (at the bucket root), which listings skip
    and expiry empties: replicating data that sits inside it would copy nothing, silently, and let
    expiry delete it."""
    if not quarantine_prefix:
        return
    inside = quarantine_prefix.strip("/") + "/"
    for location in locations:
        if location.prefix.startswith(inside):
            raise ConfigurationError(
                f"quarantine_prefix {quarantine_prefix!r} holds storage-target/{location.label}'s objects ({location.url}): "
                "choose a quarantine prefix outside the replicated data"
            )


def check_distinct(source: S3Location, destinations: list[S3Location]) -> None:
    """A destination that is the source, or whose prefix overlaps another's, would copy onto itself
    or delete what it just copied: refuse before doing anything."""
    everyone = [source, *destinations]
    for i, a in enumerate(everyone):
        for b in everyone[i + 1:]:
            if a.store_id != b.store_id:
                continue
            if a.prefix == b.prefix:
                raise ConfigurationError(
                    f"storage-target/{b.label} is the same place as storage-target/{a.label} ({a.url})"
                )
            if a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix):
                raise ConfigurationError(
                    f"storage-target/{a.label} ({a.url}) and storage-target/{b.label} ({b.url}) have overlapping prefixes"
                )
