"""Benchmark: this project's `replicate` vs `rclone sync --checksum`, side by side, one run.

    .venv/bin/python -m bench.replication.run                 # all three scenarios (~20 minutes on 2 cores)
    .venv/bin/python -m bench.replication.run large           # only some: small,large,nochange
    .venv/bin/python -m bench.replication.run large --rounds 5

Two local moto S3 endpoints (started here on free ports, stopped by PID at the end); same
concurrency for both (16 transfers). Scenarios: (a) 5,000 objects of 4-64 KiB, (b) 8 objects of
128 MiB, (c) a no-change re-run over 20,000 objects. The project verifies every object end to end
(MD5 of the source bytes against the ETag the destination computed; parts likewise); rclone
compares MD5/ETag. Each scenario starts with one untimed run of each tool (it syncs (c), and warms
the destination moto up for (a) and (b): the first GiB it stores costs it page faults that would
fall on whichever tool went first), then runs ``--rounds`` times (default 3), the two tools taking
turns to go first. Before every timed run, either tool's, the destination is emptied ((a), (b)),
then the tool starts after SETTLE_S (default 0; LLMR_BENCH_SETTLE_S); the project's process boots
and warms up before that and waits, so neither tool's timed run includes its start-up and both
start in the same state. The medians are compared. Prints every
round (with the CPU-seconds of the tool and of each server during each timed run), then objects/s and MiB/s
of the median run, rclone_time / project_time of the medians and peak memory (RSS of each
process, the highest round); last line: RESULT replication small=<r> large=<r> nochange=<r>.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import psutil
from botocore.config import Config

from bench.replication.project_run import server_cpu

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
CONCURRENCY = 16
# Quiet time before every timed run, either tool's (default none: both start right after the
# destination was emptied, as rclone always did; the project's process boots and warms up first).
# This VM hands memory freed more than ~2 s ago back to its host (virtio-balloon free page
# reporting), so a run that starts right after a delete finds warm pages that a run started later
# must fault in again. Which state a run meets moved ratios here by up to 0.4; the point is that
# both tools meet the same one. LLMR_BENCH_SETTLE_S=3 measures both from a quiet machine instead.
SETTLE_S = float(os.environ.get("LLMR_BENCH_SETTLE_S", "0"))
SRC_BUCKET, DST_BUCKET = "bench-src", "bench-dst"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"moto_server on port {port} did not start; see {log}")


def start_prefect_server(port: int, home: Path, log: Path) -> subprocess.Popen:
    """A Prefect API server for the project's flow runs, as in production (a flow process talks to
    the API; with ephemeral mode it would also import the whole server into the measured process)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"})
    proc = subprocess.Popen([sys.executable, "-m", "deployments.stack.prefect_server", "server", "start",
                             "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/health"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"prefect server on port {port} did not start; see {log}")


def client(endpoint: str):  # noqa: ANN201
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench-secret",
                        config=Config(max_pool_connections=32, s3={"addressing_style": "path"},
                                      retries={"max_attempts": 5, "mode": "standard"}))


def seed(c, prefix: str, count: int, lo: int, hi: int, seed_: int) -> int:  # noqa: ANN001
    rng = random.Random(seed_)
    sizes = [rng.randint(lo, hi) for _ in range(count)]
    block = rng.randbytes(hi + 4096)

    def put(i: int) -> None:
        start = (i * 4099) % 4096
        body = block[start:start + sizes[i]]
        if sizes[i] >= 8:
            body = i.to_bytes(8, "big") + body[8:]
        c.put_object(Bucket=SRC_BUCKET, Key=f"{prefix}/f{i:06d}.bin", Body=body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(count)))
    return sum(sizes)


def seed_large(c, prefix: str, count: int, size: int) -> int:  # noqa: ANN001
    rng = random.Random(99)
    for i in range(count):
        up = c.create_multipart_upload(Bucket=SRC_BUCKET, Key=f"{prefix}/big{i}.bin")
        parts = []
        for n in range(1, size // (16 * MIB) + 1):
            r = c.upload_part(Bucket=SRC_BUCKET, Key=f"{prefix}/big{i}.bin", UploadId=up["UploadId"], PartNumber=n,
                              Body=rng.randbytes(16 * MIB))
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        c.complete_multipart_upload(Bucket=SRC_BUCKET, Key=f"{prefix}/big{i}.bin", UploadId=up["UploadId"],
                                    MultipartUpload={"Parts": parts})
    return count * size


def rclone_env(src: str, dst: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    for name, ep in (("SRC", src), ("DST", dst)):
        env.update({f"RCLONE_CONFIG_{name}_TYPE": "s3", f"RCLONE_CONFIG_{name}_PROVIDER": "Other",
                    f"RCLONE_CONFIG_{name}_ENDPOINT": ep, f"RCLONE_CONFIG_{name}_ACCESS_KEY_ID": "bench",
                    f"RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY": "bench-secret",
                    f"RCLONE_CONFIG_{name}_REGION": "us-east-1", f"RCLONE_CONFIG_{name}_FORCE_PATH_STYLE": "true"})
    return env


def run_rclone(src: str, dst: str, prefix: str) -> tuple[float, int, float]:
    cmd = ["rclone", "sync", "--checksum", "--transfers", str(CONCURRENCY), "--checkers", str(CONCURRENCY),
           f"SRC:{SRC_BUCKET}/{prefix}", f"DST:{DST_BUCKET}/rclone/{prefix}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=rclone_env(src, dst), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, cpu = 0, 0.0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
            cpu = sum(ps.cpu_times()[:2])  # the last sample before exit; rclone's last 20 ms are missed
        except psutil.Error:
            pass
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"rclone failed: {proc.stderr.read().decode()[-2000:]}")
    return elapsed, peak, cpu


def cpu_line(tool: float, servers: dict[str, float]) -> str:
    """Where a round's CPU went: on 2 cores the servers compete with the tool being measured."""
    return f"tool {tool:5.2f}  " + "  ".join(f"{k} {v:5.2f}" for k, v in servers.items())


def run_project(src: str, dst: str, prefix: str, env: dict[str, str], resume_dir: str,
                server_pids: dict[str, int] | None = None, before_timing: Callable[[], None] = lambda: None) -> dict:
    """The project's run in its own process; ``before_timing`` runs once the process has started
    and warmed up, just before its timed run (rclone's run gets the same call just before it)."""
    job = {"server_pids": server_pids or {}, "src": {"url": f"s3://{SRC_BUCKET}/{prefix}", "endpoint": src},
           "dst": {"url": f"s3://{DST_BUCKET}/project/{prefix}", "endpoint": dst},
           "concurrency": CONCURRENCY, "resume_dir": resume_dir}
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([sys.executable, "-m", "bench.replication.project_run", json.dumps(job)], cwd=ROOT,
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            ready = proc.stdout.readline()
            if ready.strip() == "ready":
                before_timing()
                proc.stdin.write("go\n")
                proc.stdin.flush()
            out, _ = proc.communicate(timeout=3600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"project run failed:\n{stderr[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    if result["failed"]:
        raise SystemExit(f"project run had failures: {result}")
    return result


def clear_prefix(c, prefix: str) -> None:  # noqa: ANN001
    """Delete every destination object below ``prefix`` (untimed, between rounds)."""
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=DST_BUCKET, Prefix=prefix + "/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            c.delete_objects(Bucket=DST_BUCKET, Delete={"Objects": keys, "Quiet": True})


def parse_args(argv: list[str]) -> tuple[set[str], int]:
    names = {"small", "large", "nochange"}
    only, rounds = set(names), 3
    args = list(argv)
    if "--rounds" in args:
        i = args.index("--rounds")
        try:
            rounds = int(args[i + 1])
        except (IndexError, ValueError):
            raise SystemExit("--rounds: give a whole number of rounds, e.g. --rounds 3") from None
        if rounds < 1:
            raise SystemExit(f"--rounds: {rounds}: at least one round")
        del args[i:i + 2]
    if args:
        only = set(args[0].split(","))
        if not only <= names:
            raise SystemExit(f"scenarios: {', '.join(sorted(only - names))} unknown; choose from small,large,nochange")
    return only, rounds


def main() -> int:
    only, rounds = parse_args(sys.argv[1:])
    if not shutil.which("rclone"):
        subprocess.run(["bash", str(ROOT / "deployments/system_packages.sh"), "rclone"], check=True)
    work = Path(tempfile.mkdtemp(prefix="llmr-bench-repl-"))
    finished = False
    ports = free_port(), free_port()
    procs = [start_moto(p, work / f"moto-{p}.log") for p in ports]
    src, dst = (f"http://127.0.0.1:{p}" for p in ports)
    # The project side runs against its own throwaway Prefect API server, on a free port.
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"PREFECT_HOME": str(work / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{api_port}/api",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"})
    try:
        procs.append(start_prefect_server(api_port, work / "prefect", work / "prefect-server.log"))
        servers = {"moto-src": procs[0].pid, "moto-dst": procs[1].pid, "prefect": procs[2].pid}
        a, b = client(src), client(dst)
        a.create_bucket(Bucket=SRC_BUCKET)
        b.create_bucket(Bucket=DST_BUCKET)
        rows = []
        if "small" in only:
            print("seeding (a) 5,000 x 4-64 KiB ...", flush=True)
            small_bytes = seed(a, "small", 5000, 4 * 1024, 64 * 1024, 1)
        if "large" in only:
            print("seeding (b) 8 x 128 MiB ...", flush=True)
            large_bytes = seed_large(a, "large", 8, 128 * MIB)
        if "nochange" in only:
            print("seeding (c) 20,000 objects ...", flush=True)
            nochange_bytes = seed(a, "nochange", 20000, 1024, 8 * 1024, 3)

        def scenario(name: str, prefix: str, count: int, nbytes: int, unchanged: bool = False) -> float:
            # Untimed first: one run of each tool. For (c) that brings both destinations in sync; for
            # (a) and (b) it warms the destination moto up (its first GiB written costs it page
            # faults that would fall on whichever tool went first), and is then deleted.
            run_project(src, dst, prefix, env, str(work / "resume"))
            run_rclone(src, dst, prefix)
            p_runs, r_runs, baselines = [], [], []

            def settle() -> None:
                """Every timed run starts from the same state: (a), (b) an empty destination (a moto
                still holding the other tool's GiB spent ~1.6x the CPU on the same writes), then
                SETTLE_S of quiet."""
                if not unchanged:
                    clear_prefix(b, f"project/{prefix}")
                    clear_prefix(b, f"rclone/{prefix}")
                time.sleep(SETTLE_S)

            for n in range(rounds):
                order = ("project", "rclone") if n % 2 == 0 else ("rclone", "project")
                cpu = {}
                for who in order:
                    if who == "project":
                        p = run_project(src, dst, prefix, env, str(work / "resume"), servers, before_timing=settle)
                        expected = 0 if unchanged else count
                        if p["copied"] != expected:
                            raise SystemExit(f"{name} round {n + 1}: project copied {p['copied']}, expected {expected}")
                        p_runs.append((p["seconds"], p["peak_rss"]))
                        baselines.append(p["baseline_rss"])
                        cpu[who] = cpu_line(p["cpu_seconds"], p["server_cpu_seconds"])  # the timed run only
                    else:
                        settle()
                        before = server_cpu({k: psutil.Process(v) for k, v in servers.items()})
                        secs, peak, tool_cpu = run_rclone(src, dst, prefix)
                        after = server_cpu({k: psutil.Process(v) for k, v in servers.items()})
                        r_runs.append((secs, peak))
                        cpu[who] = cpu_line(tool_cpu, {k: after[k] - before[k] for k in before})
                print(f"{name:9s} round {n + 1} ({order[0]} first): project {p_runs[-1][0]:6.2f} s, "
                      f"rclone {r_runs[-1][0]:6.2f} s, ratio {r_runs[-1][0] / p_runs[-1][0]:.2f}", flush=True)
                for who in ("project", "rclone"):
                    print(f"{'':9s}   CPU-s during the {who} run: {cpu[who]}", flush=True)
            p_secs = statistics.median(t for t, _ in p_runs)
            r_secs = statistics.median(t for t, _ in r_runs)
            ratio = r_secs / p_secs
            for who, secs, peak in (("project", p_secs, max(m for _, m in p_runs)), ("rclone", r_secs, max(m for _, m in r_runs))):
                rows.append((name, who, count / secs, nbytes / MIB / secs, secs, peak / MIB))
                print(f"{name:9s} {who:8s} {count / secs:10.1f} obj/s {nbytes / MIB / secs:9.1f} MiB/s "
                      f"{secs:8.2f} s (median of {rounds})  peak RSS {peak / MIB:7.1f} MiB", flush=True)
            print(f"{name:9s} rclone_time/project_time = {ratio:.2f} (medians; rounds "
                  f"{', '.join(f'{r / q:.2f}' for (q, _), (r, _) in zip(p_runs, r_runs))}); "
                  f"project RSS before its runs {max(baselines) / MIB:.1f} MiB", flush=True)
            return ratio

        ratios = {name: float("nan") for name in ("small", "large", "nochange")}
        if "small" in only:
            ratios["small"] = scenario("small", "small", 5000, small_bytes)
        if "large" in only:
            ratios["large"] = scenario("large", "large", 8, large_bytes)
        if "nochange" in only:
            ratios["nochange"] = scenario("nochange", "nochange", 20000, nochange_bytes, unchanged=True)
        print(f"RESULT replication small={ratios['small']:.2f} large={ratios['large']:.2f} nochange={ratios['nochange']:.2f}")
        finished = True
        return 0
    finally:
        for p in procs:  # the Prefect server runs its API in a child process: stop those too, by PID
            for child in psutil.Process(p.pid).children(recursive=True) if p.poll() is None else []:
                child.terminate()
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if finished:
            shutil.rmtree(work, ignore_errors=True)
        else:  # its server logs say why
            print(f"benchmark failed; its work directory (moto and Prefect server logs) is kept: {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
