"""Benchmark: this project's backup engine vs restic, side by side on one generated data set.

    .venv/bin/python bench/backup/run.py [--size-mib 1024] [--workdir /tmp/llmr-bench-backup]

Generates ~1 GiB of mixed files (many small JSON-like/text and binary files, a few large
files: part compressible, part random like model weights), then for each tool in turn:
initial backup, incremental backup after 1 % of the bytes changed, restore; both to a local
directory repository. Prints each figure for both tools and the ratio project/restic; the last
line is `RESULT backup initial=<r> incremental=<r> restore=<r> stored=<r>` (lower is better;
target: every ratio <= 1.0, project peak memory <= 300 MiB). Run by hand, not by the tests.
Each command runs as its own process; peak memory is that process's max RSS (wait4).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "llmr-bench-not-secret"


def ensure_restic() -> str:
    found = shutil.which("restic")
    if not found:
        subprocess.run(["bash", str(ROOT / "deployments" / "system_packages.sh"), "restic"], check=True)
        found = shutil.which("restic")
    if not found:
        sys.exit("restic is not installed and could not be installed (apt-get install restic)")
    return found


def generate(src: Path, size: int, seed: int = 7) -> int:
    """~size bytes: 45 % in many small files (1-64 KiB), 55 % in a few large ones; half compressible."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(4000)]
    text_pool = b" ".join(rng.choice(words) for _ in range(400_000))  # ~2.6 MB of word salad

    def text(n: int) -> bytes:
        out, have = [], 0
        while have < n:
            at = rng.randrange(0, len(text_pool) - 65536)
            piece = text_pool[at: at + min(65536, n - have)]
            out.append(piece)
            have += len(piece)
        return b"".join(out)

    def binary(n: int) -> bytes:
        return rng.randbytes(n)

    total = 0
    small_budget = int(size * 0.45)
    i = 0
    while total < small_budget:
        n = rng.randint(1024, 64 * 1024)
        data = (text if i % 2 else binary)(n)
        path = src / f"sessions/{i % 40:02d}/obj-{i:06d}.{'json' if i % 2 else 'bin'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += n
        i += 1
    large = size - total
    parts = [("checkpoints/model-00001.safetensors", large * 35 // 100, "random"),
             ("checkpoints/model-00002.safetensors", large * 25 // 100, "random"),
             ("datasets/train.jsonl", large * 25 // 100, "text"),
             ("datasets/eval.jsonl", large * 15 // 100, "text")]
    for name, n, kind in parts:
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            left = n
            while left > 0:
                step = min(left, 8 << 20)
                out.write(text(step) if kind == "text" else rng.randbytes(step))
                left -= step
        total += n
    return total


def change_one_percent(src: Path, total: int, seed: int = 11) -> int:
    """1 % of the bytes: a few regions rewritten in large files, plus 1 in 50 small files rewritten."""
    rng = random.Random(seed)
    budget = total // 100
    changed = 0
    smalls = sorted(src.glob("sessions/*/*"))
    for path in smalls[::50]:
        if changed >= budget // 3:
            break
        data = path.read_bytes()
        path.write_bytes(rng.randbytes(len(data)))
        changed += len(data)
    for name in ("checkpoints/model-00001.safetensors", "datasets/train.jsonl"):
        path = src / name
        n = (budget - changed) // 2 if name.startswith("checkpoints") else budget - changed
        with open(path, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(rng.randrange(0, size - n))
            f.write(rng.randbytes(n))
        changed += n
    return changed


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(seconds, peak RSS in bytes, stdout) of one command run as its own process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = b"", b""
    # wait4 gives this child's own rusage (max RSS); read output afterwards (it is small).
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode()[-3000:]}")
    return elapsed, usage.ru_maxrss * 1024, out.decode()


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode())
            with open(p, "rb") as f:
                while chunk := f.read(8 << 20):
                    h.update(chunk)
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--workdir", default="/tmp/llmr-bench-backup")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    args = parser.parse_args()
    restic = ensure_restic()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    src, ours_repo, restic_repo = work / "src", work / "repo-project", work / "repo-restic"
    src.mkdir(parents=True)
    print(f"generating {args.size_mib} MiB in {src} ...", flush=True)
    total = generate(src, args.size_mib << 20)
    nfiles = sum(1 for p in src.rglob("*") if p.is_file())
    print(f"data set: {nfiles} files, {total / 2**20:.0f} MiB", flush=True)

    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(work / "restic-cache"), "PYTHONPATH": str(ROOT)}
    py = [sys.executable, "-m", "tasks.backup_cli"]
    ours_backup = [*py, "backup", "--repo", f"file://{ours_repo}", "--source", f"data=file://{src}"]
    restic_backup = [restic, "--repo", str(restic_repo), "backup", "--quiet", "--compression", "auto", str(src)]
    run([restic, "--repo", str(restic_repo), "init", "--quiet"], env)

    fig: dict[str, dict[str, float]] = {"project": {}, "restic": {}}
    mem: dict[str, float] = {"project": 0, "restic": 0}

    def record(tool: str, name: str, result: tuple[float, int, str]) -> None:
        fig[tool][name] = result[0]
        mem[tool] = max(mem[tool], result[1])
        print(f"  {tool:8s} {name:12s} {result[0]:7.2f} s  peak RSS {result[1] / 2**20:6.0f} MiB", flush=True)

    print("initial backup", flush=True)
    record("project", "initial", run(ours_backup, env))
    record("restic", "initial", run(restic_backup, env))
    changed = change_one_percent(src, total)
    print(f"changed {changed / 2**20:.1f} MiB ({100 * changed / total:.2f} %); incremental backup", flush=True)
    before = du(ours_repo)
    record("project", "incremental", run(ours_backup, env))
    uploaded = du(ours_repo) - before
    record("restic", "incremental", run(restic_backup, env))
    print(f"  project incremental stored {uploaded / 2**20:.1f} MiB ({100 * uploaded / total:.2f} % of the data set)")
    print("restore latest", flush=True)
    record("project", "restore", run([*py, "restore", "--repo", f"file://{ours_repo}", "--snapshot", "latest",
                                      "--target", str(work / "out-project"), "--only", "data"], env))
    record("restic", "restore", run([restic, "--repo", str(restic_repo), "restore", "latest", "--quiet",
                                     "--target", str(work / "out-restic")], env))
    expected = tree_digest(src)
    assert tree_digest(work / "out-project") == expected, "project restore differs from the source"
    assert tree_digest(work / ("out-restic" + str(src))) == expected, "restic restore differs from the source"
    fig["project"]["stored"] = du(ours_repo)
    fig["restic"]["stored"] = du(restic_repo)

    print()
    print(f"{'figure':14s} {'project':>12s} {'restic':>12s} {'ratio':>7s}")
    ratios = {}
    for name, unit, scale in (("initial", "s", 1), ("incremental", "s", 1), ("restore", "s", 1), ("stored", "MiB", 2**20)):
        a, b = fig["project"][name], fig["restic"][name]
        ratios[name] = a / b
        print(f"{name + ' (' + unit + ')':14s} {a / scale:12.2f} {b / scale:12.2f} {ratios[name]:7.3f}")
    print(f"{'peak mem (MiB)':14s} {mem['project'] / 2**20:12.0f} {mem['restic'] / 2**20:12.0f} {mem['project'] / mem['restic']:7.3f}")
    print(json.dumps({"data_bytes": total, "files": nfiles, "changed_bytes": changed, "figures": fig, "peak_rss": mem}))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"RESULT backup initial={ratios['initial']:.3f} incremental={ratios['incremental']:.3f} "
          f"restore={ratios['restore']:.3f} stored={ratios['stored']:.3f}")


if __name__ == "__main__":
    main()
