"""Run a suite against prompt versions on an OpenAI-compatible endpoint: async httpx, bounded
concurrency that halves on 429 and recovers, retries with backoff, a response cache.

Every (version, case, sample) is one call. Outcomes are one of: scored (passed or failed the
case's assertions) or error (timeout, connection error, 5xx or 429 after the last retry, a 4xx,
a 200 without `choices`, a judge that gave no verdict): errors are counted apart and never count
as assertion failures.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr

from tasks.prompt_assertions import JUDGE_PROMPT, JudgeFailed, Similarity, parse_judge_reply, score_case
from tasks.prompt_registry import PromptVersion
from tasks.prompt_suite import Case, Suite, check_judge, check_variables, render
from tasks.response_cache import CachedResponse, ResponseCache, cache_key
from tasks.strict_input import StrictInput

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class EndpointConfig(BaseModel):
    """What the runner needs of an LLMEndpoint block (kept plain so tests need no server)."""

    base_url: str
    model: str
    api_key: SecretStr | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 120.0

    @classmethod
    def from_block(cls, block: Any) -> EndpointConfig:
        return cls(base_url=block.base_url, model=block.model, api_key=block.api_key,
                   connect_timeout_s=block.connect_timeout_s, read_timeout_s=block.read_timeout_s)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key.get_secret_value()}"} if self.api_key else {}


class RunnerPolicy(StrictInput):
    samples: int = Field(default=3, ge=1, le=1000, description="Samples per case and version.")
    max_concurrency: int = Field(default=4, ge=1, le=512, description="Calls in flight at most.")
    max_retries: int = Field(default=4, ge=0, le=20, description="Retries per call on 429/5xx/timeouts.")
    backoff_base_s: float = Field(default=0.25, ge=0, description="First retry delay; doubles each retry.")
    backoff_cap_s: float = Field(default=10.0, gt=0)
    recover_after: int = Field(default=4, ge=1, description="Successes in a row before concurrency grows by one.")
    cache_dir: str | None = Field(default=None, description="Response cache directory; empty = no cache.")


class SampleResult(BaseModel):
    version: int
    case_id: str
    sample: int
    output: str = ""
    latency_ms: float | None = None
    error: str | None = None
    passed: bool | None = None  # None: the call errored, nothing was scored
    score: float | None = None
    cached: bool = False
    details: list[str] = Field(default_factory=list)


class RunStats(BaseModel):
    calls: int = 0  # HTTP requests sent (including retries and judge calls)
    cache_hits: int = 0
    retries: int = 0
    throttled: int = 0  # 429 responses seen
    min_concurrency: int = 0
    max_concurrency: int = 0


class AdaptiveLimiter:
    """AIMD concurrency: halve the limit on a 429, add one after `recover_after` successes."""

    def __init__(self, maximum: int, recover_after: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.recover_after = recover_after
        self.in_flight = 0
        self.successes = 0
        self.lowest = maximum
        self._cond = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimiter:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    async def throttled(self) -> None:
        async with self._cond:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self.successes = 0

    async def succeeded(self) -> None:
        async with self._cond:
            self.successes += 1
            if self.successes >= self.recover_after and self.limit < self.maximum:
                self.limit += 1
                self.successes = 0
                self._cond.notify_all()


class CallFailed(Exception):
    pass


def completion_text(response: httpx.Response) -> str | None:
    """The answer of an OpenAI chat completion body; None when the body is not one (some servers
    and proxies answer 200 with an `error` object instead)."""
    try:
        message = response.json()["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if not isinstance(message, dict):
        return None
    return message.get("content") or ""


class PromptRunner:
    def __init__(
        self, endpoint: EndpointConfig, policy: RunnerPolicy, *, judge: EndpointConfig | None = None,
        similarity: Similarity | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.judge_endpoint = judge
        self.similarity = similarity
        self.cache = ResponseCache(policy.cache_dir) if policy.cache_dir else None
        self.stats = RunStats()

    async def _post(self, client: httpx.AsyncClient, limiter: AdaptiveLimiter, body: dict[str, Any],
                    where: str) -> tuple[str, float]:
        """One chat completion with retries; returns (text, latency of the answering attempt).
        ``where`` (the case) is named in the error of a 200 that is not a chat completion."""
        attempt = 0
        while True:
            retry_after: float | None = None
            async with limiter:
                self.stats.calls += 1
                started = time.perf_counter()
                try:
                    response = await client.post("chat/completions", json=body)
                    latency_ms = (time.perf_counter() - started) * 1000
                    status = response.status_code
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    status, response, latency_ms = None, None, 0.0
                    error = f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__
            if response is not None and status == 200:
                text = completion_text(response)
                if text is None:
                    raise CallFailed(f"{response.request.url} answered HTTP 200 without `choices[0].message` for "
                                     f"{where}: {response.text[:160]!r}")
                await limiter.succeeded()
                return text, latency_ms
            if status == 429:
                self.stats.throttled += 1
                await limiter.throttled()
                header = response.headers.get("retry-after") if response is not None else None
                try:
                    retry_after = float(header) if header else None
                except ValueError:
                    retry_after = None
            if status is not None:
                error = f"HTTP {status}: {response.text[:160]}"
                if status not in RETRY_STATUS:
                    raise CallFailed(error)
            if attempt >= self.policy.max_retries:
                raise CallFailed(error)
            delay = min(self.policy.backoff_cap_s, self.policy.backoff_base_s * 2**attempt)
            delay *= 1 + random.uniform(-0.5, 0.5)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.policy.backoff_cap_s))
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(delay)

    @staticmethod
    def messages(version: PromptVersion, case: Case) -> list[dict[str, str]]:
        messages = []
        if version.system:
            messages.append({"role": "system", "content": render(version.system, case.vars)})
        messages.append({"role": "user", "content": render(version.template, case.vars)})
        return messages

    async def _one(
        self, client: httpx.AsyncClient, judge_client: httpx.AsyncClient | None, limiter: AdaptiveLimiter,
        version: PromptVersion, case: Case, sample: int,
    ) -> SampleResult:
        result = SampleResult(version=version.version, case_id=case.id, sample=sample)
        key = cache_key(version_hash=version.content_hash, model=self.endpoint.model, params=version.params,
                        variables=case.vars, sample=sample)
        hit = self.cache.get(key) if self.cache else None
        if hit is not None:
            self.stats.cache_hits += 1
            output, latency_ms, result.cached = hit.output, hit.latency_ms, True
        else:
            body = {"model": self.endpoint.model, "messages": self.messages(version, case), **version.params}
            try:
                output, latency_ms = await self._post(client, limiter, body, f"case {case.id!r} ({version.ref})")
            except CallFailed as exc:
                result.error = str(exc)
                return result
            if self.cache:
                self.cache.put(key, CachedResponse(output=output, latency_ms=latency_ms))
        result.output, result.latency_ms = output, latency_ms

        async def judge(rubric: str, answer: str) -> tuple[bool, str]:
            assert self.judge_endpoint is not None and judge_client is not None
            body = {"model": self.judge_endpoint.model, "temperature": 0, "max_tokens": 4,
                    "messages": [{"role": "user", "content": JUDGE_PROMPT.format(rubric=rubric, output=answer)}]}
            try:
                reply, _ = await self._post(judge_client, limiter, body, f"judging case {case.id!r}")
            except CallFailed as exc:
                raise JudgeFailed(f"judge call failed for case {case.id!r}: {exc}") from exc
            return parse_judge_reply(reply)

        try:
            scored = await score_case(case, output, latency_ms, judge=judge if judge_client else None,
                                      similarity=self.similarity)
        except JudgeFailed as exc:  # no verdict: an error of this sample, not an assertion failure
            result.error = str(exc)
            return result
        result.passed, result.score = scored.passed, scored.score
        result.details = [f"{'ok' if r.passed else 'FAIL'} {r.assertion} {r.detail}".strip() for r in scored.results]
        return result

    async def run(self, suite: Suite, versions: list[PromptVersion]) -> list[SampleResult]:
        """Every case x sample for every version; checks the judge and the variables of all
        versions first, so bad input fails before any call."""
        check_judge(suite, self.judge_endpoint is not None)
        for version in versions:
            check_variables(suite, version.template, f"{version.ref} template")
            if version.system:
                check_variables(suite, version.system, f"{version.ref} system prompt")
        limiter = AdaptiveLimiter(self.policy.max_concurrency, self.policy.recover_after)
        timeout = httpx.Timeout(self.endpoint.read_timeout_s, connect=self.endpoint.connect_timeout_s)
        limits = httpx.Limits(max_connections=self.policy.max_concurrency * 2,
                              max_keepalive_connections=self.policy.max_concurrency * 2)
        async with httpx.AsyncClient(base_url=self.endpoint.base_url.rstrip("/") + "/", timeout=timeout,
                                     headers=self.endpoint.headers(), limits=limits) as client:
            judge_client = None
            if self.judge_endpoint is not None:
                judge_client = httpx.AsyncClient(
                    base_url=self.judge_endpoint.base_url.rstrip("/") + "/", headers=self.judge_endpoint.headers(),
                    timeout=httpx.Timeout(self.judge_endpoint.read_timeout_s,
                                          connect=self.judge_endpoint.connect_timeout_s))
            try:
                jobs = [self._one(client, judge_client, limiter, v, c, s)
                        for v in versions for c in suite.cases for s in range(self.policy.samples)]
                results = await asyncio.gather(*jobs)
            finally:
                if judge_client is not None:
                    await judge_client.aclose()
        self.stats.min_concurrency = limiter.lowest
        self.stats.max_concurrency = limiter.maximum
        return list(results)
