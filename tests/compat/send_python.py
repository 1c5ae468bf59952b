"""Sends the compatibility scenario through segment-analytics-python (module segment.analytics).

Two clients on purpose: a synchronous one (one POST /v1/batch per call) for the `py-user-1`
story, and a queued one with gzip for the `py-user-2` story, flushed at the end.

Usage: python send_python.py HOST WRITE_KEY
"""

import sys

from segment.analytics.client import Client

host, write_key = sys.argv[1], sys.argv[2]
errors = []


def on_error(error, batch):
    errors.append(f"{error!r} ({len(batch)} events)")


# User 1: anonymous browsing, then identify with the anonymousId (stitch), an order and a group.
sync = Client(write_key, host=host, sync_mode=True, on_error=on_error, max_retries=2, timeout=10)
sync.page(anonymous_id="py-anon-1", category="Shop", name="Home", properties={"url": "https://shop.example/"})
sync.track(anonymous_id="py-anon-1", event="Product Viewed", properties={"product_id": "sku-1", "price": 42.5})
sync.identify(
    user_id="py-user-1",
    anonymous_id="py-anon-1",
    traits={"email": "py-user-1@example.com", "name": "Ann Python", "plan": "pro"},
)
sync.track(
    user_id="py-user-1",
    event="Order Completed",
    properties={
        "order_id": "py-order-1",
        "revenue": 42.5,
        "currency": "EUR",
        "products": [{"product_id": "sku-1", "price": 42.5, "quantity": 1}],
    },
)
sync.group(user_id="py-user-1", group_id="py-acme", traits={"name": "Acme Python"})

# User 2: identified, then an anonymous device linked to it by alias; sent batched and gzipped.
queued = Client(write_key, host=host, gzip=True, upload_size=100, on_error=on_error, max_retries=2, timeout=10)
queued.identify(user_id="py-user-2", traits={"email": "py-user-2@example.com", "plan": "free"})
queued.track(user_id="py-user-2", event="Signed Up", properties={"method": "email"})
queued.track(anonymous_id="py-anon-2", event="Product Viewed", properties={"product_id": "sku-2"})
queued.alias(previous_id="py-anon-2", user_id="py-user-2")
queued.flush()
queued.join()

if errors:
    print("segment-analytics-python reported errors:", *errors, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("python: sent 9 events")
