"""Command-line backup and restore of fsspec URLs without Prefect (scripts and the benchmark).

    python -m tasks.backup_cli backup  --repo file:///srv/repo --source data=file:///srv/data
    python -m tasks.backup_cli restore --repo file:///srv/repo --snapshot latest --target /tmp/out --only data
    python -m tasks.backup_cli verify  --repo file:///srv/repo --read-fraction 1

The flows in flows/backup.py do the same through Prefect (blocks, retries, artifacts, events);
this entry point takes plain URLs, for local use and for measuring the engine alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import fsspec
from fsspec.core import url_to_fs

from tasks.backup_engine import default_restore_workers, default_workers, run_backup
from tasks.backup_maintenance import verify_repository
from tasks.backup_manifest import check_restorable
from tasks.backup_repository import Repository
from tasks.errors import LLMResilienceError
from tasks.restore_engine import restore_files, select_files


def _repo(url: str) -> Repository:
    fs, root = url_to_fs(url)
    return Repository(fs, root, url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.backup_cli")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup")
    b.add_argument("--repo", required=True)
    b.add_argument("--source", action="append", required=True, help="name=url")
    b.add_argument("--workers", type=int, default=default_workers())
    r = sub.add_parser("restore")
    r.add_argument("--repo", required=True)
    r.add_argument("--snapshot", default="latest")
    r.add_argument("--target", required=True)
    r.add_argument("--only", default=None, help="restore one source at the target's root")
    r.add_argument("--workers", type=int, default=default_restore_workers())
    v = sub.add_parser("verify")
    v.add_argument("--repo", required=True)
    v.add_argument("--read-fraction", type=float, default=0.0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    repo = _repo(args.repo)
    if args.command == "backup":
        repo.open_or_init()
        sources = []
        for spec in args.source:
            name, _, url = spec.partition("=")
            fs, root = url_to_fs(url)
            sources.append((name, fs, root, url))
        sid, stats, writer = run_backup(repo, sources, workers=args.workers)
        out = {"snapshot": sid, "files": stats.files, "bytes_read": stats.bytes_read, "bytes_uploaded": writer.bytes_uploaded}
    elif args.command == "restore":
        repo.open()
        repo.load_index()
        sid, manifest = repo.resolve_snapshot(args.snapshot)
        check_restorable(manifest)
        fs, root = url_to_fs(args.target) if "://" in args.target else (fsspec.filesystem("file"), args.target)
        stats = restore_files(repo, select_files(manifest.files, args.only), fs, root, args.only, args.workers)
        out = {"snapshot": sid, "files": stats.files, "bytes_written": stats.bytes_written}
    else:
        repo.open()
        report = verify_repository(repo, read_fraction=args.read_fraction)
        out = {"ok": report.ok, "problems": report.problems, "bad_chunks": [vars(b) for b in report.bad_chunks]}
        if not report.ok:
            print(json.dumps(out))
            return 1
    out["seconds"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(out))
    return 0


def run(argv: list[str] | None = None) -> int:
    """main() with the project's errors printed as one line (they name the object) instead of a traceback."""
    try:
        return main(argv)
    except LLMResilienceError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
