"""Where data lives: any fsspec URL (s3://, file://, memory:// ...), with its credentials."""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec.core import split_protocol
from pydantic import Field, SecretStr, field_validator

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials

S3_PROTOCOLS = frozenset({"s3", "s3a"})


class StorageTarget(Block):
    """A root in object storage or a file system that pipelines read from and write to.

    The same block works against AWS S3, MinIO, moto or a local directory: only the URL,
    the endpoint and the credentials change. Secrets are ``SecretStr`` (or a prefect-aws
    ``AwsCredentials`` block), so they never show in the UI, logs or artifacts.
    """

    _block_type_name = "Storage Target"
    _block_type_slug = "storage-target"
    _description = "An fsspec URL (s3://bucket/prefix, file:///path, memory://name) and how to reach it."
    _logo_url = "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"  # noqa: E501

    url: str = Field(description="Root of the target as an fsspec URL, e.g. s3://bucket/prefix.")
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, moto, Ceph); empty for AWS."
    )
    region_name: str | None = Field(default=None, description="S3 region, e.g. us-east-1.")
    access_key_id: str | None = Field(default=None, description="S3 access key id.")
    secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    aws_credentials: AwsCredentials | None = Field(
        default=None, description="A prefect-aws credentials block; used instead of the key fields."
    )
    client_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra fsspec storage options (non-secret), passed to the file system as given.",
    )

    @field_validator("url")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        """A URL with a protocol, or an absolute local path. Anything else ('s3:/bucket',
        'bucket', '') would be read as a path relative to the worker's directory: a backup of
        it would find nothing there and store an empty copy without a word."""
        protocol, path = split_protocol(value)
        path = path or ""
        if protocol is None:
            if not value.startswith("/"):
                raise ValueError(f"url {value!r}: not a URL (s3://bucket/prefix, file:///abs/path) or an absolute path")
            protocol = "file"
        if protocol not in fsspec.available_protocols():
            raise ValueError(f"url {value!r}: unknown fsspec protocol {protocol!r}")
        if protocol in S3_PROTOCOLS and (not path.strip("/") or path.startswith("/")):
            raise ValueError(f"url {value!r}: an S3 URL needs a bucket, e.g. s3://my-bucket/prefix")
        if protocol in ("file", "local") and not path.startswith("/"):
            raise ValueError(f"url {value!r}: a file URL needs an absolute path, e.g. file:///srv/data")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        """boto3 would fail later on 'localhost:9000' with a message that names no block field."""
        if not value:
            return None
        scheme, _, rest = value.partition("://")
        if scheme not in ("http", "https") or not rest.strip("/"):
            raise ValueError(f"endpoint_url {value!r}: give an http(s) URL, e.g. http://127.0.0.1:9000")
        return value

    @property
    def protocol(self) -> str:
        return split_protocol(self.url)[0] or "file"

    @property
    def root(self) -> str:
        """The root as a path of :meth:`filesystem` (no protocol), without a trailing slash."""
        fs_cls = fsspec.get_filesystem_class(self.protocol)
        return fs_cls._strip_protocol(self.url).rstrip("/") or "/"

    def path(self, *parts: str) -> str:
        """A path below the root; refuses parts that climb out of it."""
        for part in parts:
            if part.startswith("/") or ".." in part.split("/"):
                raise ValueError(f"path part {part!r} would leave the target root {self.url}")
        return "/".join([self.root.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def storage_options(self) -> dict[str, Any]:
        """fsspec options for this target; holds secret values, so never log the result."""
        options: dict[str, Any] = dict(self.client_options)
        if self.protocol in S3_PROTOCOLS:
            client_kwargs: dict[str, Any] = dict(options.pop("client_kwargs", {}))
            if self.aws_credentials is not None:
                creds = self.aws_credentials
                if creds.aws_access_key_id:
                    options["key"] = creds.aws_access_key_id
                if creds.aws_secret_access_key:
                    options["secret"] = creds.aws_secret_access_key.get_secret_value()
                if creds.aws_session_token:
                    options["token"] = creds.aws_session_token
                if creds.region_name:
                    client_kwargs.setdefault("region_name", creds.region_name)
                endpoint = getattr(creds.aws_client_parameters, "endpoint_url", None)
                if endpoint:
                    client_kwargs.setdefault("endpoint_url", endpoint)
            if self.access_key_id:
                options["key"] = self.access_key_id
            if self.secret_access_key is not None:
                options["secret"] = self.secret_access_key.get_secret_value()
            if self.endpoint_url:
                client_kwargs["endpoint_url"] = self.endpoint_url
            if self.region_name:
                client_kwargs["region_name"] = self.region_name
            if client_kwargs:
                options["client_kwargs"] = client_kwargs
        return options

    def filesystem(self) -> fsspec.AbstractFileSystem:
        """A fresh file system for this target (not shared with other blocks' cached instances)."""
        return fsspec.filesystem(self.protocol, skip_instance_cache=True, **self.storage_options())
