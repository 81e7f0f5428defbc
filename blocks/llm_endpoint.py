"""An OpenAI-compatible model endpoint (a model server, a gateway, a hosted API)."""

from __future__ import annotations

import httpx
from pydantic import Field, SecretStr, field_validator

from prefect.blocks.core import Block


class LLMEndpoint(Block):
    """Base URL, model name, API key and timeouts of an OpenAI-compatible endpoint.

    ``client()`` gives an httpx client already carrying the key and the timeouts, so no
    pipeline handles the key itself.
    """

    _block_type_name = "LLM Endpoint"
    _block_type_slug = "llm-endpoint"
    _description = "An OpenAI-compatible endpoint: base URL (…/v1), model, API key, timeouts."
    _logo_url = "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"  # noqa: E501

    base_url: str = Field(description="OpenAI-compatible root, e.g. http://127.0.0.1:8100/v1.")
    model: str = Field(min_length=1, description="Model name sent in requests, e.g. smollm2-135m-instruct.")
    api_key: SecretStr | None = Field(default=None, description="Bearer token, if the endpoint needs one.")
    connect_timeout_s: float = Field(default=2.0, gt=0, description="Seconds to establish a connection.")
    read_timeout_s: float = Field(default=60.0, gt=0, description="Seconds to wait for a response.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError(f"base_url {value!r} is not an http(s) URL")
        if url.path.rstrip("/").endswith(("/chat/completions", "/completions", "/models")):
            raise ValueError(f"base_url {value!r} names an operation: give the API root, e.g. http://host:8100/v1")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _blank_key_is_no_key(cls, value: SecretStr | None) -> SecretStr | None:
        """A key pasted with a newline would break every request's headers, and a field cleared in
        the UI saves as "", which must not send an empty ``Bearer`` token."""
        if value is None:
            return None
        key = value.get_secret_value().strip()
        return SecretStr(key) if key else None

    def _headers(self) -> dict[str, str]:
        if self.api_key is None:
            return {}
        return {"Authorization": f"Bearer {self.api_key.get_secret_value()}"}

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url + "/", headers=self._headers(), timeout=self._timeout())

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url + "/", headers=self._headers(), timeout=self._timeout())
