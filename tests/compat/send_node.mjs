// Sends the compatibility scenario through @segment/analytics-node (Basic auth + writeKey in the
// body, JSON batches to {host}{path}).
//
// Usage: node send_node.mjs HOST WRITE_KEY

import { Analytics } from '@segment/analytics-node'

const [host, writeKey] = process.argv.slice(2)
if (!host || !writeKey) {
  console.error('usage: node send_node.mjs HOST WRITE_KEY')
  process.exit(2)
}

const errors = []
const delivered = []

// Batch user 1's story in one request (flushAt 5), user 2's one event at a time (flushAt 1).
async function session(flushAt, calls) {
  const analytics = new Analytics({ writeKey, host, path: '/v1/batch', flushAt, maxRetries: 2, httpRequestTimeout: 10000 })
  analytics.on('error', (error) => errors.push(String(error?.reason ?? error)))
  const done = (error, ctx) => {
    if (error) errors.push(String(error?.reason ?? error))
    else delivered.push(ctx?.event?.type)
  }
  for (const [method, payload] of calls) {
    analytics[method](payload, done)
    if (flushAt === 1) {
      // One event per request, in order: wait for this one before the next.
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  await analytics.closeAndFlush({ timeout: 15000 })
}

await session(5, [
  ['page', { anonymousId: 'node-anon-1', category: 'Shop', name: 'Home', properties: { url: 'https://shop.example/' } }],
  ['track', { anonymousId: 'node-anon-1', event: 'Product Viewed', properties: { product_id: 'sku-1', price: 42.5 } }],
  ['identify', { userId: 'node-user-1', anonymousId: 'node-anon-1', traits: { email: 'node-user-1@example.com', name: 'Ann Node', plan: 'pro' } }],
  ['track', {
    userId: 'node-user-1',
    event: 'Order Completed',
    properties: { order_id: 'node-order-1', revenue: 42.5, currency: 'EUR', products: [{ product_id: 'sku-1', price: 42.5, quantity: 1 }] },
  }],
  ['group', { userId: 'node-user-1', groupId: 'node-acme', traits: { name: 'Acme Node' } }],
])

await session(1, [
  ['identify', { userId: 'node-user-2', traits: { email: 'node-user-2@example.com', plan: 'free' } }],
  ['track', { userId: 'node-user-2', event: 'Signed Up', properties: { method: 'email' } }],
  ['track', { anonymousId: 'node-anon-2', event: 'Product Viewed', properties: { product_id: 'sku-2' } }],
  ['alias', { previousId: 'node-anon-2', userId: 'node-user-2' }],
])

if (errors.length > 0 || delivered.length !== 9) {
  console.error(`@segment/analytics-node: delivered ${delivered.length}/9, errors:\n  ${errors.join('\n  ')}`)
  process.exit(1)
}
console.log('node: sent 9 events')
