#!/usr/bin/env python3
"""Cross-check Atrium's ALS against the `implicit` library on the same split.

The Rust side writes the split and scores every model with `atrium_recs::eval`; this script
only trains `implicit` on `train.tsv` and exports its factors, so both are scored by the same
metric code.

Setup (once, from this directory; nothing here is committed, see .gitignore):

    python3 -m venv .venv && .venv/bin/pip install implicit
    mkdir -p data && .venv/bin/pip download --no-deps recbole -d data

Run:

    .venv/bin/python compare.py [--dataset movielens|shop|both] [--factors 64] ...

Confidence: Atrium uses c = 1 + alpha * r; `implicit` uses c = alpha * r. We hand `implicit`
the values 1 + alpha * r with its alpha = 1, which is the identical objective.
"""

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time
import zipfile

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sparse  # noqa: E402
from implicit.cpu.als import AlternatingLeastSquares  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(os.path.dirname(HERE))
WORK = os.path.join(HERE, "work")
DATA = os.path.join(HERE, "data")


def movielens_file():
    """Extracts ml-100k.inter from the downloaded recbole wheel (never committed)."""
    target = os.path.join(DATA, "ml-100k.inter")
    if os.path.exists(target):
        return target
    wheels = sorted(glob.glob(os.path.join(DATA, "recbole-*.whl")))
    if not wheels:
        sys.exit(f"no recbole wheel in {DATA}: run `pip download --no-deps recbole -d data`")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        with wheel.open("recbole/dataset_example/ml-100k/ml-100k.inter") as src:
            with open(target, "wb") as dst:
                dst.write(src.read())
    return target


def cargo_example(*args):
    """Runs the Rust harness; returns its output (also printed)."""
    command = ["cargo", "run", "--quiet", "--release", "-p", "atrium-recs",
               "--example", "offline_eval", "--", *args]
    done = subprocess.run(command, cwd=CRATE, stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        sys.exit(done.returncode)
    return done.stdout


def model_row(report, name):
    """(NDCG@10, train seconds) of one model's row in the harness's report."""
    for line in report.splitlines():
        if line.startswith(name):
            fields = line[len(name):].split()
            return float(fields[2]), float(fields[5])
    sys.exit(f"no '{name}' row in the report")


def summarize(rows):
    """Per-seed NDCG@10 and training time of both libraries, then means and wins."""
    print(f"== summary over {len(rows)} seeds (random 80/20 split and initial factors per seed)")
    print(f"{'seed':>6} {'atrium NDCG':>12} {'implicit NDCG':>14} {'atrium s':>9} {'implicit s':>11}")
    for seed, (ours, theirs) in rows:
        print(f"{seed:>6} {ours[0]:>12.4f} {theirs[0]:>14.4f} {ours[1]:>9.3f} {theirs[1]:>11.3f}")
    ndcg = [statistics.mean(r[i][0] for _, r in rows) for i in (0, 1)]
    seconds = [statistics.median(r[i][1] for _, r in rows) for i in (0, 1)]
    wins = sum(1 for _, (ours, theirs) in rows if ours[0] >= theirs[0])
    faster = sum(1 for _, (ours, theirs) in rows if ours[1] <= theirs[1])
    print(f"{'mean':>6} {ndcg[0]:>12.4f} {ndcg[1]:>14.4f} {seconds[0]:>9.3f} {seconds[1]:>11.3f}"
          "  (train s: median)")
    print(f"NDCG@10 >= implicit on {wins} of {len(rows)} seeds; "
          f"training faster on {faster} of {len(rows)}")


def load_train(out):
    with open(os.path.join(out, "shape.txt")) as f:
        users, items = (int(v) for v in f.read().split())
    data = np.loadtxt(os.path.join(out, "train.tsv"), dtype=np.float64, ndmin=2)
    rows, cols, values = data[:, 0].astype(np.int64), data[:, 1].astype(np.int64), data[:, 2]
    return sparse.csr_matrix((values, (rows, cols)), shape=(users, items), dtype=np.float32)


def train_implicit(out, args):
    train = load_train(out)
    confidence = train.copy()
    confidence.data = (1.0 + args.alpha * confidence.data).astype(np.float32)
    times = []
    model = None
    for _ in range(args.repeat):
        model = AlternatingLeastSquares(
            factors=args.factors,
            regularization=args.regularization,
            alpha=1.0,
            iterations=args.iterations,
            use_cg=not args.cholesky,
            calculate_training_loss=False,
            num_threads=args.threads,
            random_state=args.seed,
        )
        started = time.perf_counter()
        model.fit(confidence, show_progress=False)
        times.append(time.perf_counter() - started)
    model.user_factors.astype("<f4").tofile(os.path.join(out, "implicit_user_factors.f32"))
    model.item_factors.astype("<f4").tofile(os.path.join(out, "implicit_item_factors.f32"))
    with open(os.path.join(out, "implicit.txt"), "w") as f:
        f.write(f"{model.user_factors.shape[1]} {statistics.median(times):.6f}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=["movielens", "shop", "both"], default="both")
    parser.add_argument("--shop-events", type=int, default=200_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--regularization", type=float, default=20.0)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=str, default=None,
                        help="comma-separated seeds: MovieLens only, one run per seed, then a "
                             "summary (mean NDCG@10, median training time, wins)")
    parser.add_argument("--cholesky", action="store_true")
    parser.add_argument("--min-ndcg-ratio", type=float, default=0.0,
                        help="fail unless Atrium's NDCG@10 >= this fraction of implicit's")
    args = parser.parse_args()

    if args.seeds:
        movielens = ["--movielens", movielens_file()]
        rows = []
        for seed in (int(value) for value in args.seeds.split(",")):
            args.seed = seed
            report = run_one("movielens", movielens, args)
            rows.append((seed, (model_row(report, "atrium ALS"), model_row(report, "implicit ALS"))))
        summarize(rows)
        return

    runs = []
    if args.dataset in ("movielens", "both"):
        runs.append(("movielens", ["--movielens", movielens_file()]))
    if args.dataset in ("shop", "both"):
        runs.append(("shop", ["--shop", str(args.shop_events), "--temporal"]))
    for name, source in runs:
        run_one(name, source, args)


def run_one(name, source, args):
    """Splits `source` with `args.seed`, trains both libraries and returns the report."""
    out = os.path.join(WORK, name)
    os.makedirs(out, exist_ok=True)
    for stale in glob.glob(os.path.join(out, "implicit*")):
        os.remove(stale)
    print(f"== {name}, seed {args.seed}", flush=True)
    cargo_example("split", *source, "--out", out, "--seed", str(args.seed))
    train_implicit(out, args)
    report = ["report", "--out", out, "--factors", str(args.factors),
              "--iterations", str(args.iterations),
              "--regularization", str(args.regularization), "--alpha", str(args.alpha),
              "--threads", str(args.threads), "--repeat", str(args.repeat),
              "--seed", str(args.seed)]
    if args.cholesky:
        report.append("--cholesky")
    report += ["--min-ndcg-ratio", str(args.min_ndcg_ratio)]
    return cargo_example(*report)


if __name__ == "__main__":
    main()
