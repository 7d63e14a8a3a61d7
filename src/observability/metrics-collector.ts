/** Gathers MetricsSummary from every registry and topic shard, and publishes the `$SYS` topics. */
import { configFor } from "../config";
import { registryStub, topicShardStub, type Env } from "../env";
import { allShards } from "../topics/shard-rule";
import { brokerMessage, routeFromWorker } from "../topics/shard-router";
import { configuredRuleCounts } from "../rules/rule-tally";
import { rulesFor } from "../rules/rules-config";
import { analyticsPoint, summarize, sysMessages, type MetricsSummary } from "./metrics";

export async function collectMetrics(env: Env): Promise<MetricsSummary> {
  const config = configFor(env);
  const [registries, shards] = await Promise.all([
    Promise.all(allShards(config.registryShardCount).map((i) => registryStub(env, i).stats())),
    Promise.all(allShards(config.shardCount).map((i) => topicShardStub(env, i).stats())),
  ]);
  return withConfiguredRules(env, summarize(registries, shards));
}

/** The summary with only the rules of RULES now (rule-tally.ts configuredRuleCounts). */
export function withConfiguredRules(env: Env, summary: MetricsSummary): MetricsSummary {
  return { ...summary, rules: configuredRuleCounts(rulesFor(env, configFor(env)), summary.rules) };
}

/**
 * Publishes the `$SYS/broker/...` values as retained QoS 0 messages, routed like any publish.
 * Resolves with how many subscriptions matched them (0: nobody watches, the publisher may stop).
 */
export async function publishSys(env: Env, summary: MetricsSummary): Promise<number> {
  const now = Date.now();
  const messages = sysMessages(summary).map(({ topic, payload }) =>
    brokerMessage("sys", { topic, payload: new TextEncoder().encode(payload), qos: 0, retain: true }, now),
  );
  const results = await routeFromWorker(env, configFor(env), messages);
  let matched = 0;
  for (const result of results) {
    if ("error" in result) throw new Error(result.error); // a shard failed: the caller counts it as 0
    matched += result.matched;
  }
  return matched;
}

/**
 * The cron trigger (`[triggers] crons` in wrangler.toml): with a Workers Analytics Engine binding
 * named METRICS, writes one data point of the broker-wide figures per run. Without it, nothing.
 */
export async function writeMetricsPoint(env: Env): Promise<boolean> {
  const sink = env.METRICS as AnalyticsEngineDataset | undefined;
  if (!sink) return false;
  sink.writeDataPoint(analyticsPoint(await collectMetrics(env)));
  return true;
}
