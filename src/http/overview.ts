/**
 * GET /api/v1/overview: everything the dashboard shows on one refresh, from one call to each
 * registry shard and each topic shard (R + N Durable Object calls: 16 with the defaults), where
 * separate metrics, clients, subscriptions and retained calls cost 2R + 3N (40); plus one per broker
 * bridge in BRIDGES (its state, bridge-worker.ts).
 *
 * The counts are those of the tables: a subscription registered in every shard (a wildcard in its
 * first SHARD_LEVELS levels) is counted once, not once per shard, and retained `$` topics (`$SYS`)
 * are counted apart, since `#` does not list them [MQTT-4.7.2-1].
 */
import { bridgeStatuses } from "../bridge/bridge-worker";
import { configFor } from "../config";
import { registryStub, topicShardStub, type Env } from "../env";
import type { RoutedMessage, Subscription } from "../protocol/message";
import { isUtf8 } from "../protocol/validate";
import type { PresenceRecord } from "../registry/client-registry";
import { summarize } from "../observability/metrics";
import { withConfiguredRules } from "../observability/metrics-collector";
import { allShards, shardsForFilter } from "../topics/shard-rule";

export interface OverviewQuery {
  /** Connected clients whose ids start with this ("" for all). */
  prefix: string;
  /** The clients page starts after this id (the previous answer's `clients.next`). */
  after: string;
  /** Rows per list. */
  limit: number;
  /** Retained messages listed: those whose topics match this filter. */
  retained: string;
}

/** Longest text payload the overview carries per retained message (the payload view fetches all of it). */
const PREVIEW_CHARS = 200;

/**
 * Code point order, which is how SQLite compares UTF-8 text (the registries' `ORDER BY client_id`).
 * JavaScript's `<` compares UTF-16 code units, which puts U+10000 and above (surrogates, D800-DFFF)
 * before U+E000-U+FFFF: merging pages in that order could skip or repeat a client across pages.
 */
export function codePointCompare(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/** Surrogates (D800-DFFF) rank above E000-FFFF, as the code points they encode do. */
const codePointRank = (unit: number) =>
  unit >= 0xd800 && unit <= 0xdfff ? unit + 0x2000 : unit >= 0xe000 ? unit - 0x800 : unit;

/** Merges the registries' pages (each in id order) into one page of `limit`, and the cursor for the next. */
export function mergeClientPages(pages: PresenceRecord[][], limit: number) {
  const merged = pages.flat().sort((a, b) => codePointCompare(a.clientId, b.clientId));
  const clients = merged.slice(0, limit).map(presenceJson);
  return { clients, next: merged.length > limit ? clients.at(-1)!.clientId : null };
}

/** Subscriptions from several shards, each once (one in every shard is listed by each), in order. */
export function mergeSubscriptions<S extends { clientId: string; filter: string }>(found: S[][], limit: number) {
  const unique = new Map(found.flat().map((s) => [`${s.clientId}\u0000${s.filter}`, s]));
  const all = [...unique.values()].sort(
    (a, b) => codePointCompare(a.clientId, b.clientId) || codePointCompare(a.filter, b.filter),
  );
  return { subscriptions: all.slice(0, limit), truncated: all.length > limit };
}

export async function collectOverview(env: Env, q: OverviewQuery) {
  const config = configFor(env);
  const retainedShards = new Set(shardsForFilter(q.retained, config.shardCount, config.shardLevels));
  const [registries, shards, bridges] = await Promise.all([
    Promise.all(
      allShards(config.registryShardCount).map((i) => registryStub(env, i).overview(q.prefix, q.after, q.limit + 1)),
    ),
    Promise.all(
      allShards(config.shardCount).map((i) =>
        topicShardStub(env, i).overview(retainedShards.has(i) ? q.retained : undefined, q.limit + 1),
      ),
    ),
    bridgeStatuses(env),
  ]);
  const subscriptions = mergeSubscriptions(
    shards.map((s) => s.subscriptions as (Subscription & { clientId: string })[]),
    q.limit,
  );
  const retained = (shards.flatMap((s) => s.retained) as RoutedMessage[]).sort((a, b) =>
    codePointCompare(a.topic, b.topic),
  );
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  const metrics = withConfiguredRules(
    env,
    summarize(
      registries.map((r) => r.stats),
      shards.map((s) => s.stats),
    ),
  );
  return {
    collectedAt: new Date().toISOString(),
    cost: { durableObjectCalls: registries.length + shards.length + bridges.length },
    metrics,
    counts: {
      connected: metrics.connected,
      clientsMatching: sum(registries.map((r) => r.matching)),
      subscriptions:
        sum(shards.map((s) => s.counts.ownSubscriptions)) +
        Math.max(0, ...shards.map((s) => s.counts.everywhereSubscriptions)),
      subscriptionIndexEntries: metrics.subscriptionEntries,
      retained: sum(shards.map((s) => s.counts.retained)),
      dollarRetained: sum(shards.map((s) => s.counts.dollarRetained)),
    },
    clients: mergeClientPages(
      registries.map((r) => r.clients),
      q.limit,
    ),
    subscriptions,
    bridges,
    retained: {
      filter: q.retained,
      items: retained.slice(0, q.limit).map((m) => retainedJson(m, PREVIEW_CHARS)),
      truncated: retained.length > q.limit,
    },
  };
}

export const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

export function presenceJson(r: PresenceRecord) {
  return { ...r, connectedAt: iso(r.connectedAt) };
}

/** A retained message as JSON: text payloads as text (cut to `previewChars` when given), others base64. */
export function retainedJson(m: RoutedMessage, previewChars?: number) {
  const text = isUtf8(m.payload);
  let payload: string;
  if (text) payload = new TextDecoder().decode(m.payload);
  else {
    let binary = "";
    for (const b of m.payload) binary += String.fromCharCode(b);
    payload = btoa(binary);
  }
  const cut = previewChars !== undefined && payload.length > previewChars;
  return {
    topic: m.topic,
    payload: cut ? payload.slice(0, previewChars) : payload,
    ...(cut ? { payloadCut: true } : {}),
    encoding: text ? "utf8" : "base64",
    bytes: m.payload.length,
    qos: m.qos,
    properties: m.properties
      ? {
          ...m.properties,
          correlationData: m.properties.correlationData
            ? btoa(String.fromCharCode(...m.properties.correlationData))
            : undefined,
        }
      : undefined,
    receivedAt: iso(m.receivedAt),
  };
}
