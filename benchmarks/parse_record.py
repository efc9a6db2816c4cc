"""What one record costs to read: ``_wire.parse_record`` of the working tree against a revision's.

Run ``python benchmarks/parse_record.py 3f76422`` from the repository root. It times, in
turn and each in a process of its own, the revision's ``parse_record`` (and its
``parse_record_fast``, where it has one) and the working tree's, per call, over 64 finished
records shaped as the fake server sends them (``paramJson`` a JSON string, four result URLs
as objects, times in both of kie's forms, empty values as null, ``""`` or ``"null"``): once
with the fake server's loopback ``http://`` URLs, once with ``https://`` ones as kie.ai sends.
Each line gives min / median / max over 7 repeats of 100 passes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TIMER = """
import json, sys, timeit
from datetime import datetime, timedelta, timezone
try:
    from kie_async._protocol import wire as _wire
except ImportError:  # a commit from before the folders
    from kie_async import _wire

base, name = sys.argv[1], sys.argv[2]
now = datetime(2026, 12, 7, 16, 0, tzinfo=timezone.utc)
utc8 = timezone(timedelta(hours=8))
records = []
for serial in range(64):
    task_id = f"task-{serial:06d}"
    def at(when):
        if serial % 2:
            return when.astimezone(utc8).strftime("%Y-%m-%d %H:%M:%S")
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    empty = (None, "", "null")[serial % 3]
    urls = [{"resultUrl": f"{base}/files/{task_id}/{i}.mp4"} for i in range(4)]
    records.append({
        "taskId": task_id,
        "taskType": "mj_video_extend_manual",
        "paramJson": json.dumps({"taskId": "parent", "index": 0, "prompt": "a calm sea"}),
        "completeTime": at(now + timedelta(seconds=serial)),
        "resultInfoJson": {"resultUrls": urls},
        "successFlag": 1,
        "createTime": at(now),
        "errorCode": empty,
        "errorMessage": empty,
    })
parse = getattr(_wire, name)

def run():
    for record in records:
        parse(record, task_id=record["taskId"])

times = sorted(t / (100 * len(records)) for t in timeit.repeat(run, number=100, repeat=7))
print(f"{times[0] * 1e6:.1f} / {times[3] * 1e6:.1f} / {times[-1] * 1e6:.1f} us per call")
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the git revision to compare with")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parse-record-") as folder:
        archive = subprocess.run(
            ["git", "archive", args.rev, "kie_async"], cwd=REPO, capture_output=True, check=True
        ).stdout
        tar_path = Path(folder) / "old.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(folder, filter="data")
        empty = Path(folder) / "cwd"  # run from here: the current folder comes first in sys.path
        empty.mkdir()
        has_fast = "def parse_record_fast" in (Path(folder) / "kie_async/_wire.py").read_text()
        sides = [(f"{args.rev} parse_record_fast", folder, "parse_record_fast")] * has_fast
        sides += [(f"{args.rev} parse_record", folder, "parse_record")]
        sides += [("working tree parse_record", None, "parse_record")]
        for base in ("http://127.0.0.1:8123", "https://cdn.example.com"):
            print(f"result URLs {base}/...")
            for label, path, name in sides:
                env = dict(os.environ)
                env.pop("PYTHONPATH", None)
                if path:  # PYTHONPATH comes before the editable install
                    env["PYTHONPATH"] = path
                out = subprocess.run(
                    [sys.executable, "-c", TIMER, base, name],
                    env=env,
                    cwd=empty,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                print(f"  {label}: {out.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
