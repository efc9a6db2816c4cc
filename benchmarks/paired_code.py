"""Two versions of kie_async side by side: client CPU in paired rounds, each on fresh servers.

Run ``python benchmarks/paired_code.py REV sdk_gather --tasks 3000 --concurrency 3000
--baseline naive`` to compare the working tree's ``kie_async`` with the one at git revision
``REV``. Each round runs the variant once on each version (and the baseline, if given), in an
order that alternates between rounds, each against a fresh ``python -m kie_async.testing``
(the older version's server too), as ``bench_bulk.py`` measures; it prints the per-round ratios
of the working tree to ``REV``, and of each to the baseline, with their min / median / max.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bulk import HERE, measure, spread


def with_rounds(values: list[float]) -> str:
    """min / median / max of ``values`` (as ``bench_bulk`` prints them), then every round."""
    rounds = " ".join(f"{v:.2f}" for v in values)
    return f"{spread(values).replace('**', '')} (rounds: {rounds})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the git revision to compare with")
    parser.add_argument("variant", help="a variant of _variants.py, e.g. extend_many")
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--polls", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--baseline", help="a bare variant measured in each round too")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    settings = {"tasks": args.tasks, "concurrency": args.concurrency, "polls": args.polls}
    cpu: dict[str, list[float]] = {"rev": [], "tree": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="paired-") as folder:
        archive = subprocess.run(
            ["git", "archive", args.rev, "kie_async"],
            cwd=HERE.parent,
            capture_output=True,
            check=True,
        ).stdout
        tar_path = Path(folder) / "old.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(folder, filter="data")
        for number in range(args.rounds):
            order = ["rev", "tree"] if number % 2 == 0 else ["tree", "rev"]
            if args.baseline:
                order = ["baseline", *order] if number % 2 == 0 else [*order, "baseline"]
            for which in order:
                # PYTHONPATH comes before the editable install: the old package is imported.
                if which == "rev":
                    os.environ["PYTHONPATH"] = folder
                else:
                    os.environ.pop("PYTHONPATH", None)
                variant = args.baseline if which == "baseline" else args.variant
                result = measure(variant, **settings)
                if "error" in result:
                    raise SystemExit(f"{which}: {result['error']}")
                cpu[which].append(result["cpu"])
        os.environ.pop("PYTHONPATH", None)
    print(f"{args.variant}, {args.tasks:,} tasks x {args.polls} poll(s), {args.rounds} rounds")
    print(
        "working tree / "
        + args.rev
        + ": "
        + with_rounds([t / r for t, r in zip(cpu["tree"], cpu["rev"], strict=True)])
    )
    if args.baseline:
        for which in ("rev", "tree"):
            ratios = [a / b for a, b in zip(cpu[which], cpu["baseline"], strict=True)]
            name = args.rev if which == "rev" else "working tree"
            print(f"{name} / {args.baseline}: {with_rounds(ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
