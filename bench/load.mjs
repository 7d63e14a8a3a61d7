// @ts-check
/**
 * The load generator's side of a scenario: connecting many clients, sending without buffering
 * unboundedly, and waiting for what was sent to arrive.
 */
import { BenchClient } from "./client.mjs";

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const now = () => performance.now();

let run = 0;
/** A tag unique to one scenario run, for its client ids and topics. */
export const tag = () => `${process.pid}-${++run}`;

/**
 * `n` connected clients named `prefix-0` ..., connected 50 at a time.
 * @param {string} url
 * @param {number} n
 * @param {string} prefix
 * @param {ConstructorParameters<typeof BenchClient>[2]} [opts]
 * @returns {Promise<BenchClient[]>}
 */
export async function clients(url, n, prefix, opts) {
  const list = [];
  for (let i = 0; i < n; i += 50) {
    const size = Math.min(50, n - i);
    const batch = Array.from({ length: size }, (_, k) => new BenchClient(url, `${prefix}-${i + k}`, opts));
    await Promise.all(batch.map((c) => c.connect()));
    list.push(...batch);
  }
  return list;
}

/**
 * Waits until `count()` reaches `target` or stops growing for `idleMs`.
 * @param {() => number} count
 * @param {number} target
 */
export async function settle(count, target, idleMs = 3000, capMs = 60000) {
  const start = now();
  let last = count();
  let lastChange = now();
  while (count() < target && now() - start < capMs) {
    await sleep(20);
    const c = count();
    if (c !== last) {
      last = c;
      lastChange = now();
    } else if (now() - lastChange > idleMs) break;
  }
}

/**
 * Sends in slices, yielding so sockets drain: the generator never buffers unboundedly.
 * @param {BenchClient} client
 * @param {number} i the number of messages `client` has sent so far
 */
export async function pace(client, i) {
  if (i % 100 === 0) {
    await new Promise((r) => setImmediate(r));
    while (client.buffered > 1 << 20) await sleep(1);
  }
}
