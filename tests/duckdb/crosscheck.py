#!/usr/bin/env python3
"""Cross-checks every Atrium analytics query against hand-written DuckDB SQL.

Builds a shop in a fresh data directory with the atrium binary (hand-made edge cases: merged
identities, refunds, DST changes in several time zones, events exactly on window edges, a
midnight DST gap; plus a generated shop from `atrium gen`), exports the warehouse as Parquet
with `atrium export`, runs each request through `atrium analytics ... --json`, computes the same
answer with DuckDB SQL over the exported files, and fails on any difference (counts exactly,
amounts and ratios to 1e-9 relative).

Usage: crosscheck.py --atrium target/debug/atrium [--events 20000] [--keep DIR]
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import duckdb

# ---------------------------------------------------------------------------------------------
# Data


def edge_events():
    """Hand-made events around the cases most likely to differ between engines."""
    events = []

    def add(kind, who, at, name=None, props=None, campaign=None, traits=None, extra=None):
        event = {"type": kind, "timestamp": at}
        event.update(who)
        if name:
            event["event"] = name
        if props is not None:
            event["properties"] = props
        if traits is not None:
            event["traits"] = traits
        context = {}
        if campaign:
            context["campaign"] = dict(zip(["source", "medium", "name"], campaign))
        if extra:
            context.update(extra)
        if context:
            event["context"] = context
        events.append(event)

    anon = lambda i: {"anonymousId": i}  # noqa: E731
    user = lambda i: {"userId": i}  # noqa: E731
    # Merged identities: anonymous browsing, then login; the order as the user.
    add("page", anon("x-a1"), "2026-03-01T09:00:00Z", campaign=("google", "cpc", "spring"))
    add("track", anon("x-a1"), "2026-03-01T09:01:00Z", "Product Viewed", {"category": "shoes"})
    add("track", anon("x-a1"), "2026-03-01T09:05:00Z", "Product Added", {})
    add("identify", anon("x-a1"), "2026-03-01T09:10:00Z", traits={"plan": "pro"})
    events[-1]["userId"] = "x-u1"
    add("track", user("x-u1"), "2026-03-01T09:20:00Z", "Order Completed", {"order_id": "xo1", "revenue": 100})
    add("track", user("x-u1"), "2026-03-05T12:00:00Z", "Order Refunded", {"order_id": "xo1", "revenue": 40})
    # Window edges: an order exactly 7 days after the view, and one 7 days + 1 ms after.
    add("page", anon("x-a2"), "2026-03-02T10:00:00Z", campaign=("newsletter", "email", "march"))
    add("track", anon("x-a2"), "2026-03-02T10:01:00Z", "Product Viewed", {"category": "hats"})
    add("page", anon("x-a2"), "2026-03-02T10:02:00Z")
    add("track", anon("x-a2"), "2026-03-02T10:03:00Z", "Product Added", {})
    add("page", anon("x-a2"), "2026-03-05T10:00:00Z", campaign=("google", "cpc", "spring"))
    add("track", anon("x-a2"), "2026-03-09T10:01:00Z", "Order Completed", {"order_id": "xo2", "revenue": 50})
    add("track", user("x-u3"), "2026-03-03T08:00:00Z", "Product Viewed", {"category": "shoes"})
    add("track", user("x-u3"), "2026-03-03T08:30:00Z", "Product Added", {})
    add("track", user("x-u3"), "2026-03-10T08:00:00.001Z", "Order Completed", {"order_id": "xo3", "revenue": 30})
    add("page", user("x-u3"), "2026-01-01T08:00:00Z", campaign=("google", "cpc", "winter"))
    # A returning customer; an order at 23:30 UTC (the next day in Berlin).
    add("track", user("x-u5"), "2026-02-20T12:00:00Z", "Order Completed", {"order_id": "xo5a", "revenue": 10})
    add("track", user("x-u5"), "2026-03-04T23:30:00Z", "Order Completed", {"order_id": "xo5b", "revenue": 20})
    # Around Europe's DST change (2026-03-29) and the US one (2026-03-08).
    add("page", user("x-u6"), "2026-03-28T23:30:00Z")
    add("track", user("x-u6"), "2026-03-29T22:30:00Z", "Order Completed", {"order_id": "xo6", "revenue": 5})
    add("track", user("x-u6"), "2026-03-08T06:59:59.999Z", "Product Viewed", {"category": "hats"})
    add("track", user("x-u6"), "2026-03-08T07:00:00Z", "Product Added", {})
    # Events exactly on local midnights (range edges).
    add("track", user("x-u7"), "2026-02-28T23:00:00Z", "Product Viewed", {"category": "shoes"})
    add("track", user("x-u7"), "2026-03-31T22:00:00Z", "Product Viewed", {"category": "shoes"})
    add("track", user("x-u7"), "2026-03-31T21:59:59.999Z", "Order Completed", {"order_id": "xo7", "revenue": 12.5})
    # Santiago's midnight DST gap (2026-09-06 starts at 01:00 local = 04:00 UTC).
    add("track", user("x-u8"), "2026-09-06T03:59:59.999Z", "Product Viewed", {"category": "hats"})
    add("track", user("x-u8"), "2026-09-06T04:00:00Z", "Order Completed", {"order_id": "xo8", "revenue": 7})
    # Same timestamp, order decided by offset.
    add("track", user("x-u9"), "2026-03-12T12:00:00Z", "Product Viewed", {"category": "bags"}, campaign=("tiktok", "social", "bags"))
    add("track", user("x-u9"), "2026-03-12T12:00:00Z", "Product Added", {})
    add("track", user("x-u9"), "2026-03-12T12:00:00Z", "Order Completed", {"order_id": "xo9", "revenue": 60})
    return events


# ---------------------------------------------------------------------------------------------
# Requests


def requests():
    """(kind, request) pairs; every one is checked."""
    march = {"from": "2026-03-01", "to": "2026-04-01"}
    gen = {"from": "2026-01-01", "to": "2026-03-05"}
    out = []
    for tz in ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]:
        for g in ["total", "day", "week", "month"]:
            out.append(("kpis", {**march, "time_zone": tz, "granularity": g}))
    out.append(("kpis", {**gen, "time_zone": "America/Santiago", "granularity": "week", "breakdown": "utm_source"}))
    out.append(("kpis", {"from": "2026-09-01T00:00:00-04:00", "to": "2026-09-10T00:00:00-03:00", "time_zone": "America/Santiago", "granularity": "day"}))
    out.append(("kpis", {**gen, "granularity": "week", "breakdown": "device", "metrics": ["revenue", "orders", "aov", "refunds"]}))
    out.append(("kpis", {**march, "filters": [{"field": "traits.plan", "op": "eq", "value": "pro"}]}))
    out.append(("kpis", {**gen, "breakdown": "properties.category", "filters": [{"field": "country", "op": "eq", "value": "US"}]}))
    steps3 = [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Order Completed"}]
    steps4 = [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Checkout Started"}, {"event": "Order Completed"}]
    for order in ["loose", "strict"]:
        out.append(("funnel", {**march, "steps": steps3, "window": {"value": 7, "unit": "day"}, "order": order}))
        out.append(("funnel", {**gen, "time_zone": "Europe/Berlin", "granularity": "week", "steps": steps4, "window": {"value": 7, "unit": "day"}, "order": order, "breakdown": "utm_source"}))
    out.append(("funnel", {**march, "time_zone": "America/New_York", "granularity": "day", "steps": [{"event": "Product Viewed", "filters": [{"field": "properties.category", "op": "eq", "value": "hats"}]}, {"event": "Product Added"}], "window": {"value": 1, "unit": "second"}}))
    out.append(("funnel", {**gen, "steps": [{"event": "$page"}, {"event": "Product Viewed"}, {"event": "$page"}], "window": {"value": 30, "unit": "minute"}}))
    for g, periods in [("day", 10), ("week", 6), ("month", 2)]:
        out.append(("retention", {**gen, "time_zone": "Europe/Berlin", "granularity": g, "start": {"event": "Product Viewed"}, "periods": periods}))
    out.append(("retention", {**gen, "granularity": "week", "start": {"event": "Order Completed"}, "return": {"event": "Order Completed"}, "periods": 8, "breakdown": "device"}))
    out.append(("retention", {**march, "time_zone": "Asia/Kolkata", "granularity": "day", "start": {"event": "Product Viewed"}, "periods": 14}))
    for breakdown in ["utm_source", "utm_medium", "campaign"]:
        out.append(("attribution", {**gen, "breakdown": breakdown}))
    out.append(("attribution", {**march, "time_zone": "Europe/Berlin", "granularity": "week", "lookback": {"value": 5, "unit": "day"}, "half_life": {"value": 2, "unit": "day"}}))
    out.append(("paths", {**gen, "anchor": {"event": "Product Viewed"}, "depth": 3, "limit": 15}))
    out.append(("paths", {**gen, "anchor": {"event": "Order Completed"}, "direction": "previous", "depth": 2, "breakdown": "device"}))
    out.append(("paths", {**march, "time_zone": "Europe/Berlin", "granularity": "week", "anchor": {"event": "$page"}, "limit": 5}))
    return out


# ---------------------------------------------------------------------------------------------
# Helpers


def q(text):
    return "'" + str(text).replace("'", "''") + "'"


def bound_ms(text, tz):
    """A request bound as Atrium reads it: a date is local midnight (zones here have none in a gap)."""
    if len(text) == 10:
        local = datetime.combine(date.fromisoformat(text), datetime.min.time(), ZoneInfo(tz))
        return int(local.timestamp() * 1000)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def local_midnight_ms(day, tz):
    """Local midnight of `day`, or the first valid minute after it (a DST gap)."""
    zone = ZoneInfo(tz)
    naive = datetime.combine(day, datetime.min.time())
    for minute in range(240):
        candidate = (naive + timedelta(minutes=minute)).replace(tzinfo=zone)
        round_trip = candidate.astimezone(timezone.utc).astimezone(zone)
        if round_trip.replace(tzinfo=None) == candidate.replace(tzinfo=None):
            return int(candidate.timestamp() * 1000)
    raise ValueError(day)


def period_start(day, g):
    if g == "week":
        return day - timedelta(days=day.weekday())
    if g == "month":
        return day.replace(day=1)
    return day


def next_period(day, g):
    if g == "week":
        return day + timedelta(days=7)
    if g == "month":
        return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day + timedelta(days=1)


def periods(tz, g, from_ms, to_ms):
    """Labels of the local periods overlapping [from, to)."""
    zone = ZoneInfo(tz)
    day = period_start(datetime.fromtimestamp(from_ms / 1000, zone).date(), g)
    labels = []
    while local_midnight_ms(day, tz) < to_ms:
        labels.append(day.isoformat())
        day = next_period(day, g)
    return labels


DIMENSIONS = {
    "event": "event", "type": "type", "name": "name", "channel": "channel", "source": "source",
    "utm_source": "campaign_source", "utm_medium": "campaign_medium", "campaign": "campaign_name",
    "device": "device_type", "os": "os_name", "country": "country", "city": "city",
}


def field_sql(field):
    """SQL of a filter/breakdown field over `e` (events) and `p` (profiles)."""
    if field.startswith("properties."):
        return f"json_extract_string(e.properties, {q('$.' + field[len('properties.'):])})"
    if field.startswith("traits."):
        return f"json_extract_string(p.traits, {q('$.' + field[len('traits.'):])})"
    return f"e.{DIMENSIONS[field]}"


def filter_sql(f):
    value = f"NULLIF({field_sql(f['field'])}, '')"
    op = f["op"]
    if op == "eq":
        return f"coalesce({value} = {q(f['value'])}, false)"
    if op == "neq":
        return f"NOT coalesce({value} = {q(f['value'])}, false)"
    if op == "exists":
        return f"{value} IS NOT NULL"
    if op == "not_exists":
        return f"{value} IS NULL"
    raise ValueError(op)


def matcher_sql(m):
    event = m["event"]
    parts = []
    if event != "$any":
        parts.append(f"e.ekey = {q(event)}")
    parts += [filter_sql(f) for f in m.get("filters", [])]
    return " AND ".join(parts) if parts else "true"


def bucket_sql(tz, g, column="e.timestamp"):
    if g == "total":
        return "NULL::VARCHAR"
    return f"strftime(date_trunc({q(g)}, timezone({q(tz)}, {column})), '%Y-%m-%d')"


def group_sql(req, default=None):
    field = req.get("breakdown", default)
    if field is None:
        return "NULL::VARCHAR"
    return f"NULLIF({field_sql(field)}, '')"


def scoped(req, lo_ms, hi_ms):
    """The filtered events of a request in [lo, hi): every column, plus `off`, `rev` (revenue,
    missing = 0), `bucket` (local period label) and `grp` (breakdown value)."""
    tz = req.get("time_zone", "UTC")
    g = req.get("granularity", "total")
    where = [f"e.ts < {hi_ms}"]
    if lo_ms is not None:
        where.append(f"e.ts >= {lo_ms}")
    where += [filter_sql(f) for f in req.get("filters", [])]
    return f"""
        SELECT e.*, e."offset" AS off, coalesce(e.revenue, 0) AS rev,
               {bucket_sql(tz, g)} AS bucket, {group_sql(req)} AS grp
        FROM ev e LEFT JOIN profiles p ON p.profile_id = e.pid
        WHERE {' AND '.join(where)}"""


# ---------------------------------------------------------------------------------------------
# The DuckDB side of each query


def duck_kpis(con, req):
    tz = req.get("time_zone", "UTC")
    g = req.get("granularity", "total")
    lo, hi = bound_ms(req["from"], tz), bound_ms(req["to"], tz)
    metrics = req.get("metrics") or ["revenue", "orders", "aov", "visitors", "purchasers", "conversion_rate", "new_customers", "returning_customers", "refunds", "refunded_revenue", "dau", "wau", "mau"]
    order_only = not any(m in metrics for m in ["visitors", "conversion_rate", "dau", "wau", "mau"])
    first = f"""
        SELECT pid, min(ts) AS fts, arg_min({bucket_sql(tz, g, 'timestamp')}, ts) AS fbucket
        FROM ({scoped(req, None, hi)}) WHERE ekey = 'Order Completed' GROUP BY pid"""
    keep = "WHERE ekey IN ('Order Completed', 'Order Refunded')" if order_only else ""
    out = {}
    for total in [False, True]:
        bucket = "NULL::VARCHAR" if total else "r.bucket"
        new_test = f"fo.fts >= {lo}" + ("" if total else " AND fo.fbucket = r.bucket")
        sql = f"""
            WITH r AS (SELECT * FROM ({scoped(req, lo, hi)}) {keep}), fo AS ({first})
            SELECT {bucket} AS bucket, r.grp,
              count(DISTINCT r.pid) AS visitors,
              count(DISTINCT r.pid) FILTER (WHERE ekey = 'Order Completed') AS purchasers,
              count(*) FILTER (WHERE ekey = 'Order Completed') AS orders,
              coalesce(sum(rev) FILTER (WHERE ekey = 'Order Completed'), 0) AS revenue,
              count(*) FILTER (WHERE ekey = 'Order Refunded') AS refunds,
              coalesce(sum(rev) FILTER (WHERE ekey = 'Order Refunded'), 0) AS refunded_revenue,
              count(DISTINCT r.pid) FILTER (WHERE ekey = 'Order Completed' AND {new_test}) AS new_customers
            FROM r LEFT JOIN fo USING (pid) GROUP BY ALL"""
        for row in con.execute(sql).fetchall():
            b, grp, visitors, purchasers, orders, revenue, refunds, refunded, new = row
            if total is False and g == "total":
                continue
            values = {
                "revenue": revenue, "orders": orders, "aov": revenue / orders if orders else None,
                "visitors": visitors, "purchasers": purchasers,
                "conversion_rate": purchasers / visitors if visitors else None,
                "new_customers": new, "returning_customers": purchasers - new,
                "refunds": refunds, "refunded_revenue": refunded,
            }
            out[("total" if total else b, grp)] = {m: values[m] for m in metrics if m in values}
    for metric, pg in [("dau", "day"), ("wau", "week"), ("mau", "month")]:
        if metric not in metrics:
            continue
        n = len(periods(tz, pg, lo, hi))
        sql = f"""
            SELECT grp, sum(c) FROM (
              SELECT {bucket_sql(tz, pg, 'timestamp')} AS period, grp, count(DISTINCT pid) AS c
              FROM ({scoped(req, lo, hi)}) GROUP BY ALL) GROUP BY grp"""
        for grp, total in con.execute(sql).fetchall():
            out[("total", grp)][metric] = total / n
    return out


def atrium_kpis(answer):
    out = {}
    for total, rows in [(False, answer["rows"]), (True, answer["totals"])]:
        for row in rows:
            values = {k: v for k, v in row.items() if k not in ("bucket", "group")}
            out[("total" if total else row["bucket"], row["group"])] = values
    return out


def duck_funnel(con, req):
    tz = req.get("time_zone", "UTC")
    lo, hi = bound_ms(req["from"], tz), bound_ms(req["to"], tz)
    steps = req["steps"]
    window = req["window"]["value"] * {"second": 1000, "minute": 60000, "hour": 3600000, "day": 86400000, "week": 604800000}[req["window"]["unit"]]
    strict = req.get("order", "loose") == "strict"
    marks = ", ".join(f"({matcher_sql(s)}) AS m{k}" for k, s in enumerate(steps))
    base = f"""
        SELECT e.*, {marks}, row_number() OVER (PARTITION BY e.pid ORDER BY e.ts, e.off) AS pos
        FROM ({scoped(req, lo, hi)}) e"""
    # Each attempt: its start, then each next step's position and time.
    ctes = [f"e AS ({base})", "a0 AS (SELECT pid, pos AS p0, ts AS t0, ts AS s0, bucket, grp FROM e WHERE m0)"]
    for k in range(1, len(steps)):
        prev = f"a{k - 1}"
        if strict:
            pick = f"(SELECT min(x.pos) FROM e x WHERE x.pid = {prev}.pid AND x.pos = {prev}.p{k - 1} + 1 AND x.m{k} AND x.ts - {prev}.s0 <= {window})"
        else:
            pick = f"(SELECT min(x.pos) FROM e x WHERE x.pid = {prev}.pid AND x.pos > {prev}.p{k - 1} AND x.m{k} AND x.ts - {prev}.s0 <= {window})"
        ctes.append(f"""a{k} AS (
            SELECT b.*, y.ts AS t{k} FROM (SELECT {prev}.*, {pick} AS p{k} FROM {prev}) b
            LEFT JOIN e y ON y.pid = b.pid AND y.pos = b.p{k})""")
    last = f"a{len(steps) - 1}"
    depth = " + ".join(f"(p{k} IS NOT NULL)::INT" for k in range(len(steps)))
    ctes.append(f"""best AS (
        SELECT * FROM (SELECT *, {depth} AS depth,
          row_number() OVER (PARTITION BY pid ORDER BY {depth} DESC, p0) AS choice FROM {last})
        WHERE choice = 1)""")
    head = "WITH " + ",\n".join(ctes)
    out = {}
    groupings = [("total", "NULL::VARCHAR")] + ([] if req.get("granularity", "total") == "total" else [("bucket", "bucket")])
    for name, bucket in groupings:
        cols = []
        for k in range(len(steps)):
            cols.append(f"count(*) FILTER (WHERE depth > {k})")
            cols.append("NULL" if k == 0 else f"median((t{k} - t{k - 1}) / 1000.0) FILTER (WHERE depth > {k})")
        sql = f"{head} SELECT {bucket} AS bucket, grp, {', '.join(cols)} FROM best GROUP BY ALL"
        for row in con.execute(sql).fetchall():
            b, grp, rest = row[0], row[1], row[2:]
            counts = rest[0::2]
            medians = rest[1::2]
            result = []
            for k in range(len(steps)):
                prev = counts[k - 1] if k else None
                result.append({
                    "profiles": counts[k],
                    "conversion_from_previous": (counts[k] / prev if prev else None) if k else None,
                    "conversion_from_start": counts[k] / counts[0] if counts[0] else None,
                    "drop_off": prev - counts[k] if k else 0,
                    "median_seconds_from_previous": medians[k],
                })
            out[("total" if name == "total" else b, grp)] = result
    if not out and "breakdown" not in req:
        out[("total", None)] = [{"profiles": 0, "conversion_from_previous": None, "conversion_from_start": None, "drop_off": 0, "median_seconds_from_previous": None} for _ in steps]
    return out


def atrium_funnel(answer):
    out = {}
    for total, rows in [(False, answer["rows"]), (True, answer["totals"])]:
        for row in rows:
            out[("total" if total else row["bucket"], row["group"])] = [
                {k: v for k, v in step.items() if k != "event"} for step in row["steps"]]
    return out


def duck_retention(con, req):
    tz = req.get("time_zone", "UTC")
    g = req["granularity"]
    lo, hi = bound_ms(req["from"], tz), bound_ms(req["to"], tz)
    labels = periods(tz, g, lo, hi)
    index = {label: i for i, label in enumerate(labels)}
    start = matcher_sql(req["start"])
    back = matcher_sql(req.get("return") or {"event": "$any"})
    sql = f"""
        WITH s AS (SELECT * FROM ({scoped(req, None, hi)}) e WHERE {start}),
        first AS (SELECT pid, arg_min(ts, (ts, off)) AS ts, arg_min_null(grp, (ts, off)) AS grp,
                         arg_min(bucket, (ts, off)) AS cohort FROM s GROUP BY pid),
        r AS (SELECT * FROM ({scoped(req, lo, hi)}) e WHERE {back})
        SELECT f.cohort, f.grp, f.pid, list(DISTINCT r.bucket) AS seen
        FROM first f LEFT JOIN r ON r.pid = f.pid
        WHERE f.ts >= {lo} GROUP BY ALL"""
    cells = {}
    n = req["periods"]
    for cohort, grp, _pid, seen in con.execute(sql).fetchall():
        key = (cohort, grp)
        counts = cells.setdefault(key, [0] * (n + 1))
        counts[0] += 1
        c = index[cohort]
        offsets = {index[b] - c for b in (seen or []) if b is not None and b in index}
        for p in range(1, n + 1):
            if p in offsets:
                counts[p] += 1
    out = {}
    for (cohort, grp), counts in cells.items():
        c = index[cohort]
        out[(cohort, grp)] = [counts[p] if c + p < len(labels) else None for p in range(n + 1)]
    return out


def atrium_retention(answer):
    return {(row["cohort"], row["group"]): row["retained"] for row in answer["rows"]}


def duck_attribution(con, req):
    tz = req.get("time_zone", "UTC")
    lo, hi = bound_ms(req["from"], tz), bound_ms(req["to"], tz)
    lookback = (req.get("lookback") or {"value": 30, "unit": "day"})
    half = (req.get("half_life") or {"value": 7, "unit": "day"})
    unit = {"second": 1000, "minute": 60000, "hour": 3600000, "day": 86400000, "week": 604800000}
    lb = lookback["value"] * unit[lookback["unit"]]
    hl = half["value"] * unit[half["unit"]]
    breakdown = req.get("breakdown", "utm_source")
    r = dict(req, breakdown=breakdown)
    conv = matcher_sql(req.get("conversion") or {"event": "Order Completed"})
    sql = f"""
        WITH e AS ({scoped(r, lo - lb, hi)}),
        c AS (SELECT pid, ts, off, rev AS revenue, bucket FROM e WHERE {conv} AND ts >= {lo}),
        t AS (SELECT pid, ts, off, grp FROM e WHERE NULLIF(campaign_source, '') IS NOT NULL),
        j AS (SELECT c.pid, c.off AS coff, c.revenue, c.bucket, t.grp, c.ts - t.ts AS age,
                     row_number() OVER (PARTITION BY c.pid, c.off ORDER BY t.ts, t.off) AS k,
                     count(*) OVER (PARTITION BY c.pid, c.off) AS n
              FROM c JOIN t ON t.pid = c.pid AND (t.ts < c.ts OR (t.ts = c.ts AND t.off < c.off))
                AND c.ts - t.ts <= {lb}),
        w AS (SELECT *,
                (k = 1)::DOUBLE AS first_touch,
                (k = n)::DOUBLE AS last_touch,
                1.0 / n AS linear,
                CASE WHEN n = 1 THEN 1.0 WHEN n = 2 THEN 0.5
                     WHEN k = 1 OR k = n THEN 0.4 ELSE 0.2 / (n - 2) END AS position_based,
                pow(2.0, -age / {hl}) / sum(pow(2.0, -age / {hl})) OVER (PARTITION BY pid, coff) AS time_decay
              FROM j),
        direct AS (SELECT c.* FROM c WHERE NOT EXISTS (SELECT 1 FROM j WHERE j.pid = c.pid AND j.coff = c.off))
        SELECT 'm' AS model, bucket, grp, sum(first_touch), sum(first_touch * revenue),
               sum(last_touch), sum(last_touch * revenue), sum(linear), sum(linear * revenue),
               sum(position_based), sum(position_based * revenue), sum(time_decay), sum(time_decay * revenue)
        FROM w GROUP BY ALL
        UNION ALL
        SELECT 'd', bucket, '(direct)', count(*), sum(revenue), count(*), sum(revenue), count(*), sum(revenue),
               count(*), sum(revenue), count(*), sum(revenue)
        FROM direct GROUP BY ALL"""
    models = ["first_touch", "last_touch", "linear", "position_based", "time_decay"]
    out = {}
    for row in con.execute(sql).fetchall():
        _, bucket, grp = row[:3]
        for i, model in enumerate(models):
            conversions, revenue = row[3 + 2 * i], row[4 + 2 * i]
            if conversions == 0:
                continue
            out[(model, bucket, grp)] = {"conversions": conversions, "revenue": revenue}
    totals = con.execute(f"WITH e AS ({scoped(r, lo, hi)}) SELECT count(*), coalesce(sum(rev), 0) FROM e WHERE {conv}").fetchone()
    out[("totals",)] = {"conversions": totals[0], "revenue": totals[1]}
    return out


def atrium_attribution(answer):
    out = {(row["model"], row["bucket"], row["group"]): {"conversions": row["conversions"], "revenue": row["revenue"]} for row in answer["rows"]}
    out[("totals",)] = {"conversions": answer["conversions"], "revenue": answer["revenue"]}
    return out


def duck_paths(con, req):
    tz = req.get("time_zone", "UTC")
    lo, hi = bound_ms(req["from"], tz), bound_ms(req["to"], tz)
    depth = req.get("depth", 1)
    limit = req.get("limit", 10)
    previous = req.get("direction", "next") == "previous"
    end = "$start" if previous else "$end"
    sign = "-" if previous else "+"
    joins = "\n".join(f"LEFT JOIN e n{k} ON n{k}.pid = a.pid AND n{k}.pos = a.pos {sign} {k}" for k in range(1, depth + 1))
    cases = []
    for k in range(1, depth + 1):
        items = [f"n{i}.ekey" for i in range(1, k)] + [q(end)]
        cases.append(f"WHEN n{k}.ekey IS NULL THEN [{', '.join(items)}]")
    full = ", ".join(f"n{i}.ekey" for i in range(1, depth + 1))
    sql = f"""
        WITH e AS (SELECT *, row_number() OVER (PARTITION BY pid ORDER BY ts, off) AS pos
                   FROM ({scoped(req, lo, hi)})),
        a AS (SELECT e.* FROM e WHERE {matcher_sql(req['anchor'])}),
        s AS (SELECT a.bucket, a.grp, a.pid, CASE {' '.join(cases)} ELSE [{full}] END AS path
              FROM a {joins}),
        anchors AS (SELECT bucket, grp, count(*) AS total FROM a GROUP BY ALL),
        counted AS (SELECT bucket, grp, path, count(*) AS occurrences, count(DISTINCT pid) AS profiles
                    FROM s GROUP BY ALL),
        ranked AS (SELECT *, row_number() OVER (PARTITION BY bucket, grp
                     ORDER BY occurrences DESC, profiles DESC, path) AS rank FROM counted)
        SELECT r.bucket, r.grp, r.path, r.occurrences, r.profiles, r.occurrences / x.total
        FROM ranked r JOIN anchors x ON x.bucket IS NOT DISTINCT FROM r.bucket AND x.grp IS NOT DISTINCT FROM r.grp
        WHERE rank <= {limit}"""
    out = {}
    for bucket, grp, path, occurrences, profiles, share in con.execute(sql).fetchall():
        out[(bucket, grp, tuple(path))] = {"occurrences": occurrences, "profiles": profiles, "share": share}
    out[("anchors",)] = con.execute(f"WITH e AS ({scoped(req, lo, hi)}) SELECT count(*) FROM e WHERE {matcher_sql(req['anchor'])}").fetchone()[0]
    return out


def atrium_paths(answer):
    out = {(row["bucket"], row["group"], tuple(row["path"])): {"occurrences": row["occurrences"], "profiles": row["profiles"], "share": row["share"]} for row in answer["rows"]}
    out[("anchors",)] = answer["anchors"]
    return out


CHECKS = {
    "kpis": (duck_kpis, atrium_kpis),
    "funnel": (duck_funnel, atrium_funnel),
    "retention": (duck_retention, atrium_retention),
    "attribution": (duck_attribution, atrium_attribution),
    "paths": (duck_paths, atrium_paths),
}

# ---------------------------------------------------------------------------------------------
# Comparison


def same(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def differences(atrium, duck):
    lines = []
    for key in sorted(set(atrium) | set(duck), key=repr):
        left, right = atrium.get(key, "<missing>"), duck.get(key, "<missing>")
        if not same(left, right):
            lines.append(f"  {key}: atrium={left} duckdb={right}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atrium", required=True, help="path to the atrium binary")
    parser.add_argument("--events", type=int, default=20000, help="generated events besides the edge cases")
    parser.add_argument("--keep", help="build the data here and keep it (default: a temporary directory)")
    parser.add_argument("--only", choices=sorted(CHECKS), help="check only this query kind")
    args = parser.parse_args()
    started = time.time()
    work = args.keep or tempfile.mkdtemp(prefix="atrium-duckdb-")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    if os.path.exists(data):
        shutil.rmtree(data)
    env = dict(os.environ, ATRIUM_LOG="warn")
    run = lambda *cmd, **kw: subprocess.run([args.atrium, *cmd], check=True, env=env, **kw)  # noqa: E731
    edge = os.path.join(work, "edge.jsonl")
    with open(edge, "w") as out:
        for event in edge_events():
            out.write(json.dumps(event) + "\n")
    generated = os.path.join(work, "generated.jsonl")
    with open(generated, "w") as out:
        run("gen", "--seed", "11", "--events", str(args.events), stdout=out)
    run("import", edge, "--data-dir", data, "--source", "web", "--channel", "web", stdout=subprocess.DEVNULL)
    run("import", generated, "--data-dir", data, stdout=subprocess.DEVNULL)
    exported = os.path.join(work, "export")
    if os.path.exists(exported):
        shutil.rmtree(exported)
    run("export", "--format", "parquet", "--out", exported, "--data-dir", data, stdout=subprocess.DEVNULL)

    con = duckdb.connect()
    con.execute(f"CREATE TABLE identities AS SELECT * FROM read_parquet({q(os.path.join(exported, 'identities.parquet'))})")
    con.execute(f"CREATE TABLE profiles AS SELECT * FROM read_parquet({q(os.path.join(exported, 'profiles.parquet'))})")
    con.execute(f"""
        CREATE TABLE ev AS
        SELECT e.*,
          coalesce(u.profile_id, a.profile_id,
            CASE WHEN NULLIF(e.user_id, '') IS NOT NULL THEN 'user_id:' || e.user_id
                 WHEN NULLIF(e.anonymous_id, '') IS NOT NULL THEN 'anonymous_id:' || e.anonymous_id
                 ELSE 'unknown' END) AS pid,
          CASE WHEN e.type = 'track' THEN e.event ELSE '$' || e.type END AS ekey,
          epoch_ms(e.timestamp) AS ts
        FROM read_parquet({q(os.path.join(exported, 'events', '*', '*.parquet'))}, hive_partitioning = false) e
        LEFT JOIN (SELECT value, profile_id FROM identities WHERE kind = 'user_id') u ON u.value = NULLIF(e.user_id, '')
        LEFT JOIN (SELECT value, profile_id FROM identities WHERE kind = 'anonymous_id') a ON a.value = NULLIF(e.anonymous_id, '')""")
    total_events = con.execute("SELECT count(*) FROM ev").fetchone()[0]
    print(f"built {total_events} events in {time.time() - started:.1f}s under {work}")

    failures = 0
    checked = 0
    for kind, request in requests():
        if args.only and kind != args.only:
            continue
        path = os.path.join(work, "request.json")
        with open(path, "w") as out:
            json.dump(request, out)
        answer = json.loads(run("analytics", kind, "--request", path, "--json", "--data-dir", data, capture_output=True, text=True).stdout)
        duck, read = CHECKS[kind]
        expected = duck(con, request)
        actual = read(answer)
        diff = differences(actual, expected)
        checked += 1
        label = f"{kind} {json.dumps(request)}"
        if diff:
            failures += 1
            print(f"DIFFERENT {label}")
            print("\n".join(diff[:20]))
        else:
            print(f"same      {label} ({len(actual)} cells)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{checked - failures} passed, {failures} failed")
    print(f"cross-check took {time.time() - started:.1f}s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
