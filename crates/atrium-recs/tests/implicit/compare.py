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
    command = ["cargo", "run", "--quiet", "--release", "-p", "atrium-recs",
               "--example", "offline_eval", "--", *args]
    subprocess.run(command, check=True, cwd=CRATE)


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
    parser.add_argument("--cholesky", action="store_true")
    parser.add_argument("--min-ndcg-ratio", type=float, default=0.0,
                        help="fail unless Atrium's NDCG@10 >= this fraction of implicit's")
    args = parser.parse_args()

    runs = []
    if args.dataset in ("movielens", "both"):
        runs.append(("movielens", ["--movielens", movielens_file()]))
    if args.dataset in ("shop", "both"):
        runs.append(("shop", ["--shop", str(args.shop_events), "--temporal"]))
    for name, source in runs:
        out = os.path.join(WORK, name)
        os.makedirs(out, exist_ok=True)
        for stale in glob.glob(os.path.join(out, "implicit*")):
            os.remove(stale)
        print(f"== {name}", flush=True)
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
        cargo_example(*report)


if __name__ == "__main__":
    main()
