"""A Redis that holds conversation history (the session store of one region)."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from pydantic import ConfigDict, Field, SecretStr, field_validator

from prefect.blocks.core import Block
from tasks.redis_retry import bounded_retry


class SessionStore(Block):
    """Where to reach a region's session store; the password is a SecretStr, never in the URL."""

    _block_type_name = "Session Store"
    _block_type_slug = "session-store"
    _description = "A Redis session store: URL (redis:// or rediss://, no password), username, password."
    _logo_url = "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"  # noqa: E501

    # A URL someone pasted with its password must not echo back in a validation error.
    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field(description="redis://host:port/db or rediss://… (put the password in its own field).")
    username: str | None = Field(default=None, description="ACL user name, if any.")
    password: SecretStr | None = Field(default=None, description="Password (or ACL user's password).")
    socket_timeout_s: float = Field(default=2.0, gt=0, description="Seconds per command and per connect.")

    @field_validator("url")
    @classmethod
    def _redis_url_without_password(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        if scheme not in {"redis", "rediss"} or not rest:
            raise ValueError(f"url scheme {scheme!r} is not redis:// or rediss://")
        userinfo = rest.split("/", 1)[0].rpartition("@")[0]
        query = {name.strip().lower() for name, _, _ in (pair.partition("=") for pair in urlsplit(value).query.split("&"))}
        if ":" in userinfo or "password" in query:  # redis-py also takes ?password=
            raise ValueError("url carries a password; put it in the password field so it stays secret")
        # redis-py only parses these when it first connects, i.e. in the middle of a backup or drill.
        parts = urlsplit(value)
        try:
            port = parts.port  # raises for a port outside 0-65535 or not a number
        except ValueError as exc:
            raise ValueError(f"url {value!r}: {exc}") from None
        if port == 0:
            raise ValueError(f"url {value!r}: port 0 cannot be connected to")
        if not parts.hostname:
            raise ValueError(f"url {value!r} names no host")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"url {value!r}: database {db!r} is not a number")
        return value

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url,
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            socket_timeout=self.socket_timeout_s,
            socket_connect_timeout=self.socket_timeout_s,
            decode_responses=True,
            retry=bounded_retry(),
        )
