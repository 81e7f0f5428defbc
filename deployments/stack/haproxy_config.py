"""The gateway's HAProxy configuration, generated from the settings.

Region-a takes almost all traffic; region-b is an active server with the smallest weight
(1 of 256, so ~0.4% of requests: a warm standby that keeps proving it answers) and takes
everything when region-a is down. It is deliberately *not* a ``backup`` server: HAProxy 2.6
never retries a failed request onto a backup server (measured: with ``retries 5`` and
``redispatch``, all five attempts stayed on the failing primary), while a retry redispatched
among active servers reaches region-b, so the request in flight when region-a fails is saved.

Failed connections, empty responses, 5xx answers and *response timeouts* are retried on the
other server. HAProxy adjusts a server's health only from the answer it keeps, so a retried 5xx
or timeout never reaches the passive checks (``observe layer7``; measured: six 503s from region-a,
each retried onto region-b within 0.25 s, left region-a up): the active checks are what mark a
failing region down, two failed checks 250 ms apart, and the passive ones catch a 5xx that is the
final answer. A hung region is marked down once two active checks time out (``timeout check``);
until then each request sent to it costs one ``timeout server`` and then succeeds on region-b.
The primary has no ``maxconn`` (a full primary would overflow to the standby); the standby has
``maxconn 1`` so a failover's herd of requests queues in HAProxy instead of timing out inside
llama.cpp. A region that comes back is eased in by ``slowstart``. Each server is the
region's chaos proxy (deployments/stack/chaos_proxy.py), so drills can make a region answer
errors or slowly exactly as a sick model server would. The failover and failback flows move
traffic with weights and states through the admin socket (deployments/stack/haproxy_runtime.py).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from deployments.settings import PlatformSettings

BACKEND = "llm_models"
# Normal weights: the primary takes 255 of every 256 requests (HAProxy weights are 0..256).
PRIMARY_WEIGHT, STANDBY_WEIGHT = 255, 1
# Active checks: a server is marked down after CHECK_FALL failed checks, CHECK_INTER_S apart.
CHECK_FALL, CHECK_INTER_S = 2, 0.25


class GatewayConfigError(ValueError):
    """Gateway timeouts that would let a hung region take a request's last attempt."""


def hung_region_detection_s(settings: PlatformSettings) -> float:
    """Worst case from a model server hanging to the gateway marking it down: each check waits
    its full timeout, and the first one may start an interval late."""
    return CHECK_FALL * (settings.gateway_check_timeout_s + CHECK_INTER_S)


def check_retry_margin(settings: PlatformSettings, profile: GatewayProfile, timeout_s: float) -> None:
    """A request that meets a hung region spends ``timeout server`` per attempt there, and a retry
    can land on it again until the checks mark it down. Its last attempt starts ``retries`` timeouts
    after it was sent, so the region must be down by then, or that attempt times out too and the
    user gets a 504 (measured in a drill: checks 8 s, timeout 6 s, three timeouts, 504 at 18 s)."""
    if not profile.retries or not profile.retry_on_timeout:
        return
    detect_s = hung_region_detection_s(settings)
    last_attempt_s = profile.retries * timeout_s
    if detect_s >= last_attempt_s:
        raise GatewayConfigError(
            f"gateway_check_timeout_s={settings.gateway_check_timeout_s:g}: a hung region is marked down up to "
            f"{detect_s:g} s after it hangs ({CHECK_FALL} checks of that timeout, {CHECK_INTER_S:g} s apart), but "
            f"a request sent to it starts its last attempt after {last_attempt_s:g} s (retries {profile.retries} x "
            f"gateway_timeout_server_s={timeout_s:g}); lower the check timeout or raise the server timeout")


class GatewayProfile(BaseModel):
    """How the gateway reacts to a sick region; the defaults are the platform's good configuration.

    Drills are checked against a badly configured gateway too (no standby, no retries, long
    timeouts): the profile is what makes such a gateway a config, not a code path.
    """

    standby_region: bool = True
    retries: int = Field(default=2, ge=0, le=5)
    passive_checks: bool = True
    retry_on_timeout: bool = True
    timeout_server_s: float | None = Field(default=None, gt=0, description="None: the platform setting.")


def render_haproxy_config(
    settings: PlatformSettings,
    profile: GatewayProfile | None = None,
    *,
    port: int | None = None,
    admin_socket: Path | None = None,
) -> str:
    profile = profile or GatewayProfile()
    a, b = settings.region_a, settings.region_b
    timeout_s = profile.timeout_server_s or settings.gateway_timeout_server_s
    check_retry_margin(settings, profile, timeout_s)
    retry_on = "conn-failure empty-response 502 503 504" + (" response-timeout" if profile.retry_on_timeout else "")
    observe = " observe layer7 error-limit 1 on-error mark-down" if profile.passive_checks else ""
    retries = (f"    retries {profile.retries}\n    option redispatch 1\n    retry-on {retry_on}\n"
               if profile.retries else "    retries 0\n")
    # The standby serves one request at a time and queues the rest in HAProxy (timeout queue): when
    # all traffic lands on it at once, `timeout server` then times one answer, not llama.cpp's own
    # queue, so the herd of retried requests does not time it out and mark it down too. Only the
    # standby: a primary with a maxconn would overflow to the standby whenever it is busy.
    standby = (f"    server {b.name} {settings.host}:{b.chaos_port} check weight {STANDBY_WEIGHT} maxconn 1\n"
               if profile.standby_region else "")
    return f"""\
# Generated by deployments/stack/haproxy_config.py from the platform settings; edits are overwritten.
global
    log stdout format raw local0 info
    stats socket {admin_socket or settings.haproxy_socket} mode 600 level admin
    stats timeout 30s
    maxconn 512

defaults
    mode http
    log global
    option httplog
    # The whole request (a small JSON body) is read before it is sent, so a failed attempt can be
    # replayed on the other region: without it HAProxy cannot retry a POST on a 5xx answer.
    option http-buffer-request
    timeout connect 1s
    timeout client 120s
    # Longer than any answer the platform's small model gives, short enough that a hung server
    # costs one timeout: the request is then retried on the other region (retry-on response-timeout).
    timeout server {int(timeout_s * 1000)}ms
    timeout queue 30s
    # llama-cpp-python answers /v1/models only between generations, so a check waits for the
    # current answer; a hung server is one that has not answered a check for this long (twice).
    # A retried timeout or 5xx is not seen by the passive checks below, so this is what marks a sick region down.
    timeout check {int(settings.gateway_check_timeout_s * 1000)}ms
{retries}    # Passive checks too (observe layer7, on-error mark-down): a 5xx that is a request's final
    # answer (its retries spent) marks the server down at once. A retried one is not counted.
    default-server inter {int(CHECK_INTER_S * 1000)}ms fastinter {int(CHECK_INTER_S * 1000)}ms downinter 500ms fall {CHECK_FALL} rise 2 slowstart 10s{observe}

frontend llm_gateway
    bind {settings.host}:{port or settings.gateway_port}
    default_backend {BACKEND}

backend {BACKEND}
    option httpchk GET /v1/models
    http-check expect status 200
    # Which region answered: drills and the health check read it from every response.
    http-response set-header X-LLMR-Backend %s
    server {a.name} {settings.host}:{a.chaos_port} check weight {PRIMARY_WEIGHT}
{standby}"""
