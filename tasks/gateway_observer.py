"""Watch which servers the gateway routes to, from its runtime API, to time detection exactly.

Polls ``show servers state`` every ``interval_s`` in a thread and keeps each change of a
server's serving state with its time. Drills against a gateway with no runtime API skip it and
infer detection from the clients' view instead (tasks/drill_measurements.py).
"""

from __future__ import annotations

import threading
import time

from deployments.stack.haproxy_runtime import GatewayRuntimeError, HAProxyRuntime
from tasks.drill_measurements import GatewayObservation


class GatewayObserver:
    def __init__(self, runtime: HAProxyRuntime, interval_s: float = 0.05) -> None:
        self.runtime, self.interval_s = runtime, interval_s
        self.observations: list[GatewayObservation] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-observer", daemon=True)

    def start(self) -> GatewayObserver:
        self._thread.start()
        return self

    def stop(self) -> list[GatewayObservation]:
        self._stop.set()
        self._thread.join(5)
        return list(self.observations)

    def _run(self) -> None:
        last: dict[str, bool] = {}
        while not self._stop.is_set():
            try:
                servers = self.runtime.servers()
            except GatewayRuntimeError:
                self.errors += 1
            else:
                now = time.time()
                for name, state in servers.items():
                    if last.get(name) != state.serving:
                        self.observations.append(GatewayObservation(now, name, state.serving))
                        last[name] = state.serving
            self._stop.wait(self.interval_s)
