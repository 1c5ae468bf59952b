#!/bin/sh
# Real Segment SDKs against a real `atrium serve`:
#   segment-analytics-python (send_python.py) and @segment/analytics-node (send_node.mjs)
# send identify + track + page + group + alias, then the admin API is checked with curl.
# Then GrowthBook's JavaScript SDK (growthbook_node.mjs) evaluates flags against the same server,
# locally (/api/features) and with remoteEval (/api/eval), and the two must agree.
#
# Environment:
#   ATRIUM_BIN        the atrium binary to test (default: build the debug binary with cargo)
#   CARGO_TARGET_DIR  where cargo builds when ATRIUM_BIN is not set
# Node and Python dependencies are installed under tests/compat/ when missing
# (node_modules/ via `npm ci`, .venv/ via pip); both are gitignored.
# Everything listens on 127.0.0.1 only and is stopped on exit.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ -z "${ATRIUM_BIN:-}" ]; then
    echo "compat: ATRIUM_BIN not set; building the debug binary"
    (cd "$root" && cargo build --quiet -p atrium)
    ATRIUM_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/atrium"
fi
[ -x "$ATRIUM_BIN" ] || { echo "compat: $ATRIUM_BIN is not an executable" >&2; exit 1; }

if [ ! -d "$here/node_modules/@segment/analytics-node" ] || [ ! -d "$here/node_modules/@growthbook/growthbook" ]; then
    echo "compat: installing node dependencies (npm ci)"
    (cd "$here" && npm ci --no-audit --no-fund)
fi
if [ ! -x "$here/.venv/bin/python" ] || ! "$here/.venv/bin/python" -c 'import segment.analytics' 2>/dev/null; then
    echo "compat: installing python dependencies into tests/compat/.venv"
    python3 -m venv "$here/.venv"
    "$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

write_key=wk_compat_test_1
admin_key=sk_compat_test_1
work=$(mktemp -d "${TMPDIR:-/tmp}/atrium-compat.XXXXXX")
client_key=sdk_compat_test_1
server_pid=
cleanup() {
    status=$?
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        # Up to 10 s for a graceful stop, then SIGKILL.
        i=0
        while kill -0 "$server_pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -f "$work/server.log" ]; then
        echo "---- atrium server log ----" >&2
        tail -n 50 "$work/server.log" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# An SDK connection for the GrowthBook SDK (unencrypted: remoteEval refuses encryption).
printf '[[sdk_connections]]\nname = "compat"\nclient_key = "%s"\n' "$client_key" >"$work/atrium.toml"
# Port 0: the OS picks a free loopback port; the server prints the address it got.
ATRIUM_BOOTSTRAP_WRITE_KEY=$write_key ATRIUM_BOOTSTRAP_ADMIN_KEY=$admin_key ATRIUM_LOG=warn \
    "$ATRIUM_BIN" serve --config "$work/atrium.toml" --data-dir "$work/data" --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.log" &
server_pid=$!

base=
i=0
while [ -z "$base" ]; do
    base=$(sed -n 's/^atrium serving on \(http:\/\/127\.0\.0\.1:[0-9]*\).*$/\1/p' "$work/server.log" 2>/dev/null | head -n 1)
    [ -n "$base" ] && break
    kill -0 "$server_pid" 2>/dev/null || { echo "compat: atrium serve exited early" >&2; exit 1; }
    i=$((i + 1))
    [ $i -lt 200 ] || { echo "compat: atrium serve did not start within 20 s" >&2; exit 1; }
    sleep 0.1
done
i=0
until curl -fsS "$base/healthz" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "compat: $base/healthz not healthy within 10 s" >&2; exit 1; }
    sleep 0.1
done
echo "compat: atrium serving on $base"

echo "compat: sending with segment-analytics-python"
timeout 60 "$here/.venv/bin/python" "$here/send_python.py" "$base" "$write_key"
echo "compat: sending with @segment/analytics-node"
(cd "$here" && timeout 60 node send_node.mjs "$base" "$write_key")

api() {
    curl -sS --max-time 10 -H "authorization: Bearer $admin_key" "$base$1"
}

# Wait until the pipeline has applied everything in the log.
i=0
until api /v1/pipeline | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["applied_offset"] == d["log_end_offset"] == 18 else 1)'; do
    i=$((i + 1))
    if [ $i -ge 100 ]; then
        echo "compat: pipeline did not apply all 18 events within 10 s: $(api /v1/pipeline)" >&2
        exit 1
    fi
    sleep 0.1
done

passed=0
failed=0
# expect PATH DESCRIPTION PYTHON_EXPRESSION: the expression sees the JSON response as `d`.
expect() {
    if api "$1" | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError as error:
    print("    response is not JSON:", error)
    sys.exit(1)
try:
    ok = eval(sys.argv[1], {"d": d, "sys": sys})
except Exception as error:
    ok = False
    print("    error:", repr(error))
if not ok:
    print("    expression:", sys.argv[1])
    print("    response:", json.dumps(d)[:2000])
sys.exit(0 if ok else 1)
' "$3"; then
        passed=$((passed + 1))
        echo "  ok   $2"
    else
        failed=$((failed + 1))
        echo "  FAIL $2 (GET $1)"
    fi
}

for sdk in py node; do
    case $sdk in
        py) library=analytics-python; name="Ann Python" ;;
        node) library=@segment/analytics-node; name="Ann Node" ;;
    esac
    echo "compat: checking $library"
    u1=/v1/profiles/user_id:$sdk-user-1
    u2=/v1/profiles/user_id:$sdk-user-2
    expect "$u1" "$sdk-user-1 has the identify traits" \
        "d['traits'] == {'email': '$sdk-user-1@example.com', 'name': '$name', 'plan': 'pro'}"
    expect "$u1" "$sdk-user-1 counts page, both tracks, identify and group (5 events)" \
        "d['event_total'] == 5 and all(d['event_counts'].get(k) == 1 for k in ['page', 'identify', 'group', 'track:Product Viewed', 'track:Order Completed'])"
    expect "$u1" "$sdk-user-1 stitched anonymous_id $sdk-anon-1 and has email + user_id" \
        "{(i['kind'], i['value']) for i in d['identifiers']} == {('anonymous_id', '$sdk-anon-1'), ('email', '$sdk-user-1@example.com'), ('user_id', '$sdk-user-1')}"
    expect "$u1" "$sdk-user-1 has the order (42.5 EUR)" \
        "d['commerce']['order_count'] == 1 and d['commerce']['gross_revenue'] == 42.5 and '$sdk-order-1' in d['orders']"
    p1=$(api "$u1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    expect "/v1/profiles/anonymous_id:$sdk-anon-1" "anonymous_id:$sdk-anon-1 resolves to the same profile" \
        "d['id'] == '$p1'"
    expect "$u1/events?limit=50" "$sdk-user-1 timeline holds the 2 anonymous events, sent by $library" \
        "len(d['events']) == 5 and sum(1 for e in d['events'] if e.get('anonymousId') == '$sdk-anon-1' and 'userId' not in e) == 2 and all(e['context']['library']['name'] == '$library' for e in d['events'])"

    expect "$u2" "$sdk-user-2 has the identify traits" \
        "d['traits'] == {'email': '$sdk-user-2@example.com', 'plan': 'free'}"
    expect "$u2" "$sdk-user-2 counts identify, both tracks and alias (4 events)" \
        "d['event_total'] == 4 and all(d['event_counts'].get(k) == 1 for k in ['identify', 'alias', 'track:Signed Up', 'track:Product Viewed'])"
    expect "$u2" "$sdk-user-2 took in anonymous_id $sdk-anon-2 through alias" \
        "('anonymous_id', '$sdk-anon-2') in {(i['kind'], i['value']) for i in d['identifiers']} and len(d['merged_from']) == 1"
    p2=$(api "$u2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    expect "/v1/profiles/anonymous_id:$sdk-anon-2" "anonymous_id:$sdk-anon-2 resolves to the same profile" \
        "d['id'] == '$p2'"
done
expect "/v1/profiles?limit=50" "exactly 4 profiles (no anonymous leftovers)" \
    "d['total'] == 4 and len(d['profiles']) == 4"
expect "/v1/pipeline" "18 events in the log, all applied" \
    "d['log_end_offset'] == 18 and d['applied_offset'] == 18"

echo "compat: evaluating flags with @growthbook/growthbook (local and remoteEval)"
if (cd "$here" && timeout 120 node growthbook_node.mjs "$base" "$client_key" "$admin_key"); then
    passed=$((passed + 1))
    echo "  ok   GrowthBook JS SDK: same values locally and with remoteEval, tracking callback fired"
else
    failed=$((failed + 1))
    echo "  FAIL GrowthBook JS SDK local vs remoteEval"
fi

echo "compat: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
