#!/usr/bin/env python3
"""The reference engines of `atrium bench analytics`: DuckDB and chDB (ClickHouse in-process)
run the four benchmark queries over the Parquet files `atrium export` wrote, and print
timings as JSON lines.

DuckDB runs the same hand-written SQL the cross-check (crosscheck.py) verifies, except
last-touch attribution, which uses an ASOF join (its fastest form); events are a view over the
Parquet files joined to the identity snapshot, so every query reads the files like Atrium does.
chDB runs ClickHouse's own forms: windowFunnel for the funnel, an ASOF join for last touch.
Both engines time daily revenue in two forms, over `events` and over the `orders` table (which
holds the same order rows: Atrium reads it for order-only KPIs); `atrium bench analytics`
compares against the faster form.

Usage: bench_engines.py --export DIR --requests FILE [--runs 3] [--engines duckdb,chdb]
                        [--queries daily_revenue,last_touch]
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crosscheck  # noqa: E402


def timed(runs, work):
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return seconds


def duckdb_queries(export, requests):
    import duckdb

    con = duckdb.connect()
    q = crosscheck.q
    con.execute(f"CREATE TABLE identities AS SELECT * FROM read_parquet({q(os.path.join(export, 'identities.parquet'))})")
    con.execute(f"CREATE TABLE profiles AS SELECT * FROM read_parquet({q(os.path.join(export, 'profiles.parquet'))})")
    con.execute(f"""
        CREATE VIEW ev AS
        SELECT e.*,
          coalesce(u.profile_id, a.profile_id,
            CASE WHEN NULLIF(e.user_id, '') IS NOT NULL THEN 'user_id:' || e.user_id
                 WHEN NULLIF(e.anonymous_id, '') IS NOT NULL THEN 'anonymous_id:' || e.anonymous_id
                 ELSE 'unknown' END) AS pid,
          CASE WHEN e.type = 'track' THEN e.event ELSE '$' || e.type END AS ekey,
          epoch_ms(e.timestamp) AS ts
        FROM read_parquet({q(os.path.join(export, 'events', '*', '*.parquet'))}, hive_partitioning = false) e
        LEFT JOIN (SELECT value, profile_id FROM identities WHERE kind = 'user_id') u ON u.value = NULLIF(e.user_id, '')
        LEFT JOIN (SELECT value, profile_id FROM identities WHERE kind = 'anonymous_id') a ON a.value = NULLIF(e.anonymous_id, '')""")
    funnel, retention, revenue, attribution = requests
    tz = revenue.get("time_zone", "UTC")
    lo, hi = crosscheck.bound_ms(revenue["from"], tz), crosscheck.bound_ms(revenue["to"], tz)
    lookback = 30 * 86_400_000

    def daily_revenue(table, condition):
        con.execute(f"""
            SELECT strftime(date_trunc('day', timezone({q(tz)}, timestamp)), '%Y-%m-%d') AS day, channel,
                   sum(coalesce(revenue, 0)) AS revenue
            FROM read_parquet({q(os.path.join(export, table, '*', '*.parquet'))}, hive_partitioning = false)
            WHERE {condition}
              AND timestamp >= to_timestamp({lo / 1000}) AND timestamp < to_timestamp({hi / 1000})
            GROUP BY ALL""").fetchall()

    def last_touch():
        con.execute(f"""
            WITH c AS (SELECT pid, ts, coalesce(revenue, 0) AS revenue FROM ev
                       WHERE ekey = 'Order Completed' AND ts >= {lo} AND ts < {hi}),
            t AS (SELECT pid, ts, campaign_source FROM ev
                  WHERE NULLIF(campaign_source, '') IS NOT NULL AND ts >= {lo - lookback} AND ts < {hi})
            SELECT CASE WHEN t.ts IS NULL OR c.ts - t.ts > {lookback} THEN '(direct)' ELSE t.campaign_source END AS grp,
                   count(*), sum(c.revenue)
            FROM c ASOF LEFT JOIN t ON c.pid = t.pid AND c.ts > t.ts
            GROUP BY ALL""").fetchall()

    return con, {
        "funnel": lambda: crosscheck.duck_funnel(con, funnel),
        "retention": lambda: crosscheck.duck_retention(con, retention),
        "daily_revenue": lambda: daily_revenue("events", "type = 'track' AND event = 'Order Completed'"),
        "daily_revenue_orders": lambda: daily_revenue("orders", "event = 'Order Completed'"),
        "last_touch": last_touch,
    }


def chdb_queries(export, requests):
    import chdb
    from chdb import session as chs

    sess = chs.Session()
    events = os.path.join(export, "events", "*", "*.parquet")
    orders = os.path.join(export, "orders", "*", "*.parquet")
    identities = os.path.join(export, "identities.parquet")
    resolved = f"""
        (SELECT e.*,
           if(u.profile_id != '', u.profile_id, if(a.profile_id != '', a.profile_id,
              if(e.user_id != '', concat('user_id:', e.user_id), concat('anonymous_id:', e.anonymous_id)))) AS pid,
           if(e.type = 'track', e.event, concat('$', e.type)) AS ekey,
           toUnixTimestamp64Milli(e.timestamp) AS ts
         FROM file('{events}', Parquet) AS e
         LEFT JOIN (SELECT value, profile_id FROM file('{identities}', Parquet) WHERE kind = 'user_id') AS u
           ON u.value = ifNull(e.user_id, '')
         LEFT JOIN (SELECT value, profile_id FROM file('{identities}', Parquet) WHERE kind = 'anonymous_id') AS a
           ON a.value = ifNull(e.anonymous_id, ''))"""
    funnel, retention, revenue, attribution = requests
    tz = revenue.get("time_zone", "UTC")
    lo, hi = crosscheck.bound_ms(revenue["from"], tz), crosscheck.bound_ms(revenue["to"], tz)
    window = 7 * 86_400_000
    lookback = 30 * 86_400_000
    steps = [s["event"] for s in funnel["steps"]]
    conditions = ", ".join(f"ekey = {crosscheck.q(s)}" for s in steps)

    def run(sql):
        sess.query(sql, "CSV")

    def daily_revenue(files, condition):
        return f"""
            SELECT toDate(timestamp, '{tz}') AS day, channel, sum(ifNull(revenue, 0))
            FROM file('{files}', Parquet)
            WHERE {condition}
              AND toUnixTimestamp64Milli(timestamp) >= {lo} AND toUnixTimestamp64Milli(timestamp) < {hi}
            GROUP BY day, channel"""

    return sess, {
        "funnel": lambda: run(f"""
            SELECT level, count() FROM (
              SELECT pid, windowFunnel({window})(toUInt64(ts), {conditions}) AS level
              FROM {resolved} WHERE ts >= {lo} AND ts < {hi} GROUP BY pid)
            GROUP BY level ORDER BY level"""),
        "retention": lambda: run(f"""
            WITH first AS (SELECT pid, min(ts) AS fts FROM {resolved}
                           WHERE ekey = {crosscheck.q(retention['start']['event'])} AND ts < {hi} GROUP BY pid
                           HAVING fts >= {lo}),
            seen AS (SELECT DISTINCT pid, toMonday(fromUnixTimestamp64Milli(ts, 'UTC')) AS week FROM {resolved}
                     WHERE ts >= {lo} AND ts < {hi})
            SELECT toMonday(fromUnixTimestamp64Milli(f.fts, 'UTC')) AS cohort,
                   intDiv(dateDiff('day', cohort, s.week), 7) AS period, count(DISTINCT f.pid)
            FROM first AS f INNER JOIN seen AS s ON s.pid = f.pid
            WHERE period BETWEEN 0 AND {retention['periods']}
            GROUP BY cohort, period"""),
        "daily_revenue": lambda: run(daily_revenue(events, "type = 'track' AND event = 'Order Completed'")),
        "daily_revenue_orders": lambda: run(daily_revenue(orders, "event = 'Order Completed'")),
        "last_touch": lambda: run(f"""
            WITH c AS (SELECT pid, ts, ifNull(revenue, 0) AS revenue FROM {resolved}
                       WHERE ekey = 'Order Completed' AND ts >= {lo} AND ts < {hi}),
            t AS (SELECT pid, ts, campaign_source FROM {resolved}
                  WHERE ifNull(campaign_source, '') != '' AND ts >= {lo - lookback} AND ts < {hi})
            SELECT if(t.ts = 0 OR c.ts - t.ts > {lookback}, '(direct)', t.campaign_source) AS grp,
                   count(), sum(c.revenue)
            FROM c ASOF LEFT JOIN t ON c.pid = t.pid AND c.ts > t.ts
            GROUP BY grp"""),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True)
    parser.add_argument("--requests", required=True, help="JSON list: funnel, retention, kpis, attribution requests")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="duckdb,chdb")
    parser.add_argument("--queries", default="", help="comma-separated query names (default: all)")
    args = parser.parse_args()
    with open(args.requests) as f:
        requests = json.load(f)
    for engine in args.engines.split(","):
        try:
            if engine == "duckdb":
                import duckdb
                version = duckdb.__version__
                handle, queries = duckdb_queries(args.export, requests)
            elif engine == "chdb":
                import chdb
                version = chdb.__version__
                handle, queries = chdb_queries(args.export, requests)
            else:
                raise ValueError(f"unknown engine {engine}")
        except ImportError as error:
            print(json.dumps({"engine": engine, "error": f"not installed: {error}"}), flush=True)
            continue
        selected = [q for q in args.queries.split(",") if q]
        for name, work in queries.items():
            # A query's other forms (`<query>_<form>`) run with it.
            if selected and not any(name == q or name.startswith(q + "_") for q in selected):
                continue
            try:
                seconds = timed(args.runs, work)
                print(json.dumps({"engine": engine, "version": version, "query": name, "seconds": seconds}), flush=True)
            except Exception as error:  # a failing engine is reported, not fatal
                print(json.dumps({"engine": engine, "query": name, "error": str(error)[:300]}), flush=True)
        del handle


if __name__ == "__main__":
    main()
