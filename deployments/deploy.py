"""Deploy every flow in prefect.yaml to the platform's Prefect server (`make deploy`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deployments.settings import PROJECT_ROOT, PlatformSettings, load_settings
from deployments.stack.errors import StackError


LOCAL_POOL = "llm-resilience-local"  # prefect.yaml's local process pool (LLMR_WORK_POOL replaces it)


def local_deployments(path: Path = PROJECT_ROOT / "prefect.yaml") -> list[str]:
    """The deployments of prefect.yaml on the local process pool (not the Kubernetes variants)."""
    import yaml

    spec = yaml.safe_load(path.read_text())
    return [d["name"] for d in spec["deployments"] if d.get("work_pool", {}).get("name") == LOCAL_POOL]


def deploy_all(settings: PlatformSettings) -> None:
    """`prefect deploy` of every local-pool deployment against this platform; non-interactive, so it works in CI."""
    prefect = Path(sys.executable).parent / "prefect"
    names = [arg for name in local_deployments() for arg in ("--name", name)]
    cmd = [str(prefect), "--no-prompt", "deploy", *names, "--pool", settings.work_pool]
    result = subprocess.run(
        cmd,
        cwd=PROJECT_ROOT,
        env={**os.environ, **settings.prefect_env()},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise StackError(f"`{' '.join(cmd)}` failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    from deployments.automations import apply_automations

    apply_automations(settings)


def main() -> int:
    settings = load_settings()
    try:
        deploy_all(settings)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"deployed every flow in prefect.yaml to {settings.prefect_api_url} (work pool {settings.work_pool})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
