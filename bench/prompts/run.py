"""Benchmark: the same 200-case suite, run by llm-resilience's prompt runner and by promptfoo,
against one local scripted OpenAI-compatible endpoint answering after a fixed delay, at the same
concurrency, cache disabled for both. Run by hand:

    .venv/bin/python -m bench.prompts.run [--cases 200] [--concurrency 8] [--delay-s 0.05]

Installs promptfoo@0.121.20 (npm, ~80 s, ~1.4 GB) into bench/prompts/.promptfoo when missing and
runs it offline. The last line is `RESULT prompts ratio=<promptfoo_time/project_time>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROMPTFOO_VERSION = "0.121.20"
PROMPTFOO_DIR = HERE / ".promptfoo"
PROMPTFOO_BIN = PROMPTFOO_DIR / "node_modules" / ".bin" / "promptfoo"

sys.path.insert(0, str(ROOT))

from tasks.prompt_registry import PromptVersion, content_hash  # noqa: E402
from tasks.prompt_runner import EndpointConfig, PromptRunner, RunnerPolicy  # noqa: E402
from tasks.prompt_suite import parse_suite  # noqa: E402
from tests.scripted_llm import free_port  # noqa: E402

TEMPLATE = "Reply with {{answer}}"


def ensure_promptfoo() -> None:
    if PROMPTFOO_BIN.exists():
        return
    if not shutil.which("npm"):
        sys.exit("npm is needed for the promptfoo side of this benchmark (apt-get install -y nodejs npm)")
    PROMPTFOO_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing promptfoo@{PROMPTFOO_VERSION} into {PROMPTFOO_DIR} (about 80 s) ...", flush=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PROMPTFOO_DIR),
                    f"promptfoo@{PROMPTFOO_VERSION}"], check=True)


def start_endpoint(port: int, delay_s: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.scripted_llm", "--port", str(port), "--delay-s", str(delay_s),
                             "--max-seconds", "1800"], cwd=ROOT, stdin=subprocess.DEVNULL)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("the scripted endpoint did not start")


def run_project(base_url: str, cases: int, concurrency: int) -> tuple[float, int]:
    suite = parse_suite({"name": "bench", "cases": [
        {"id": f"case-{i}", "vars": {"answer": f"word{i}"}, "assert": [{"type": "equals", "value": f"word{i}"}]}
        for i in range(cases)]})
    params = {"temperature": 0, "max_tokens": 8}
    version = PromptVersion(name="bench", version=1, template=TEMPLATE, params=params, created_at="2026-01-01T00:00:00Z",
                            content_hash=content_hash(TEMPLATE, None, params))
    runner = PromptRunner(EndpointConfig(base_url=base_url, model="scripted"),
                          RunnerPolicy(samples=1, max_concurrency=concurrency, cache_dir=None))
    started = time.perf_counter()
    results = asyncio.run(runner.run(suite, [version]))
    return time.perf_counter() - started, sum(1 for r in results if r.passed)


def run_promptfoo(base_url: str, cases: int, concurrency: int, work: Path) -> tuple[float, int]:
    config = {
        "description": "bench",
        "prompts": [TEMPLATE],
        "providers": [{"id": "openai:chat:scripted",
                       "config": {"apiBaseUrl": base_url, "apiKey": "x", "temperature": 0, "max_tokens": 8}}],
        "tests": [{"vars": {"answer": f"word{i}"}, "assert": [{"type": "equals", "value": f"word{i}"}]}
                  for i in range(cases)],
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))
    with socket.socket() as s:  # an unused loopback port: promptfoo's phone-home attempts fail fast
        s.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1",
           "PROMPTFOO_DISABLE_SHARING": "1", "PROMPTFOO_DISABLE_REMOTE_GENERATION": "1",
           "HTTPS_PROXY": dead_proxy, "https_proxy": dead_proxy, "NO_PROXY": "127.0.0.1,localhost",
           "no_proxy": "127.0.0.1,localhost", "PROMPTFOO_CONFIG_DIR": str(work / "home"),
           "OPENAI_API_KEY": "x"}
    out = work / "out.json"
    out.unlink(missing_ok=True)
    cmd = [str(PROMPTFOO_BIN), "eval", "-c", str(work / "promptfooconfig.yaml"), "-o", str(out), "--no-cache",
           "--max-concurrency", str(concurrency), "--no-progress-bar", "--no-table", "--no-write"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 100) or not out.exists():
        sys.exit(f"promptfoo failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    stats = json.loads(out.read_text())["results"]["stats"]
    return elapsed, int(stats["successes"])


def main() -> None:
    parser = argparse.ArgumentParser(description="prompt runner vs promptfoo")
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--delay-s", type=float, default=0.05, help="the endpoint's fixed answer delay")
    parser.add_argument("--project-only", metavar="BASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.project_only:  # the project's side, in its own process like promptfoo's
        inner_s, ok = run_project(args.project_only, args.cases, args.concurrency)
        print(json.dumps({"inner_s": inner_s, "passed": ok}))
        return
    ensure_promptfoo()
    port = free_port()
    endpoint = start_endpoint(port, args.delay_s)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        started = time.perf_counter()
        side = subprocess.run([sys.executable, __file__, "--project-only", base_url, "--cases", str(args.cases),
                               "--concurrency", str(args.concurrency)], capture_output=True, text=True, check=True)
        project_s = time.perf_counter() - started
        inner = json.loads(side.stdout.strip().splitlines()[-1])
        project_ok, project_inner_s = inner["passed"], inner["inner_s"]
        promptfoo_s, promptfoo_ok = run_promptfoo(base_url, args.cases, args.concurrency, HERE / "work")
    finally:
        endpoint.terminate()
        endpoint.wait(10)
    print(f"suite: {args.cases} cases, concurrency {args.concurrency}, endpoint delay {args.delay_s * 1000:.0f} ms, "
          f"cache off (ideal: {args.cases * args.delay_s / args.concurrency:.2f} s)")
    print("times are whole processes (interpreter start, imports, config parsing, the run), as a user sees them")
    print(f"llm-resilience: {project_s:7.2f} s  {args.cases / project_s:8.1f} cases/s  ({project_ok} passed; "
          f"the run itself {project_inner_s:.2f} s)")
    print(f"promptfoo     : {promptfoo_s:7.2f} s  {args.cases / promptfoo_s:8.1f} cases/s  ({promptfoo_ok} passed)")
    if project_ok != args.cases or promptfoo_ok != args.cases:
        print("warning: not every case passed on both sides; compare with care")
    print(f"RESULT prompts ratio={promptfoo_s / project_s:.2f}")


if __name__ == "__main__":
    main()
