"""GrowthBook's Python SDK on the `atrium bench eval` payload: every feature for every user,
one thread. Prints JSON: evaluations per second and the values for the first N users (the
Rust side checks they are identical).

usage: bench_eval.py FEATURES.json USERS.json SAMPLE_USERS
"""

import json
import sys
import time
from importlib.metadata import version

from growthbook import GrowthBook


def main() -> None:
    features = json.load(open(sys.argv[1]))
    users = json.load(open(sys.argv[2]))
    sample_size = int(sys.argv[3])
    keys = sorted(features)

    sample = []
    for attributes in users[:sample_size]:
        gb = GrowthBook(attributes=attributes, features=features)
        sample.append([gb.eval_feature(key).value for key in keys])

    started = time.perf_counter()
    for attributes in users:
        gb = GrowthBook(attributes=attributes, features=features)
        for key in keys:
            gb.eval_feature(key)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "version": version("growthbook"),
        "seconds": seconds,
        "evaluations_per_second": len(users) * len(keys) / seconds,
        "sample": sample,
    }))


if __name__ == "__main__":
    main()
