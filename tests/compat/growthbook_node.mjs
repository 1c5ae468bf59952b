// GrowthBook's JavaScript SDK (@growthbook/growthbook) against a running atrium server, once
// evaluating locally (`GET /api/features/{clientKey}`) and once with `remoteEval: true`
// (`POST /api/eval/{clientKey}`). Both must give every user the same feature values, and in
// both the SDK's trackingCallback must fire with the experiment key and the assigned variation.
//
// Usage: node growthbook_node.mjs BASE_URL CLIENT_KEY ADMIN_KEY
import { GrowthBook, configureCache } from "@growthbook/growthbook";

const [base, clientKey, adminKey] = process.argv.slice(2);
if (!base || !clientKey || !adminKey) {
  console.error("usage: node growthbook_node.mjs BASE_URL CLIENT_KEY ADMIN_KEY");
  process.exit(2);
}

// Every instance fetches for itself: no shared cache between the two modes, no streaming.
configureCache({ disableCache: true, backgroundSync: false });

async function admin(method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  }
}

await admin("PUT", "/v1/features/banner-color", {
  defaultValue: "grey",
  rules: [
    { id: "fr", condition: { country: "FR" }, force: "blue" },
    { id: "pro", condition: { plan: { $in: ["pro", "enterprise"] } }, force: "gold" },
  ],
});
await admin("PUT", "/v1/features/max-items", { defaultValue: 10 });
await admin("PUT", "/v1/experiments/checkout-test", {
  feature: "checkout-flow",
  variations: [
    { key: "control", value: "classic" },
    { key: "treatment", value: "one-page" },
  ],
  status: "running",
  started_at: "2026-01-01T00:00:00.000Z",
});

// Definitions go through the log: wait until the payload serves all three.
const expectedKeys = ["banner-color", "checkout-flow", "max-items"];
for (let attempt = 0; ; attempt++) {
  const response = await fetch(`${base}/api/features/${clientKey}`);
  const payload = response.ok ? await response.json() : { features: {} };
  if (expectedKeys.every((key) => key in payload.features)) break;
  if (attempt >= 100) throw new Error(`features not served within 10 s: ${JSON.stringify(payload)}`);
  await new Promise((resolve) => setTimeout(resolve, 100));
}

async function evaluate(attributes, remoteEval) {
  const tracked = [];
  const gb = new GrowthBook({
    apiHost: base,
    clientKey,
    attributes,
    remoteEval,
    trackingCallback: (experiment, result) => {
      tracked.push({ experiment: experiment.key, variationId: result.variationId, value: result.value });
    },
  });
  const init = await gb.init({ timeout: 5000 });
  if (!init.success) {
    throw new Error(`init failed (remoteEval: ${remoteEval}): ${init.error}`);
  }
  const values = Object.fromEntries(expectedKeys.map((key) => [key, gb.getFeatureValue(key, null)]));
  gb.destroy();
  return { values, tracked };
}

const countries = ["FR", "US", "DE"];
const plans = ["free", "pro"];
let failures = 0;
let checks = 0;
const variationsSeen = new Set();
function check(ok, message) {
  checks++;
  if (!ok) {
    failures++;
    console.log(`  FAIL ${message}`);
  }
}

for (let index = 0; index < 12; index++) {
  const attributes = {
    id: `gb-user-${index}`,
    country: countries[index % countries.length],
    plan: plans[index % plans.length],
  };
  const local = await evaluate(attributes, false);
  const remote = await evaluate(attributes, true);
  const label = JSON.stringify(attributes);
  check(
    JSON.stringify(local.values) === JSON.stringify(remote.values),
    `${label}: local ${JSON.stringify(local.values)} vs remote ${JSON.stringify(remote.values)}`,
  );
  const expectedBanner =
    attributes.country === "FR" ? "blue" : attributes.plan === "pro" ? "gold" : "grey";
  check(local.values["banner-color"] === expectedBanner, `${label}: banner-color is ${expectedBanner}`);
  check(local.values["max-items"] === 10, `${label}: max-items is 10`);
  for (const [mode, run] of [["local", local], ["remote", remote]]) {
    check(
      run.tracked.length === 1 && run.tracked[0].experiment === "checkout-test",
      `${label}: ${mode} tracking callback fired once for checkout-test: ${JSON.stringify(run.tracked)}`,
    );
    check(
      run.tracked.length > 0 && run.tracked[0].value === run.values["checkout-flow"],
      `${label}: ${mode} tracked variation's value is the feature value`,
    );
  }
  check(
    local.tracked.length > 0 &&
      remote.tracked.length > 0 &&
      local.tracked[0].variationId === remote.tracked[0].variationId,
    `${label}: same variation tracked locally and remotely`,
  );
  if (local.tracked.length > 0) variationsSeen.add(local.tracked[0].variationId);
}
check(variationsSeen.size === 2, `both variations assigned across users: ${[...variationsSeen]}`);

console.log(`growthbook js sdk: ${checks - failures}/${checks} checks passed`);
process.exit(failures === 0 ? 0 : 1);
