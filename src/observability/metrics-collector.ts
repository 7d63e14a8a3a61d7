/** Gathers MetricsSummary from every registry and topic shard, and publishes the `$SYS` topics. */
import { configFor } from "../config";
import { registryStub, topicShardStub, type Env } from "../env";
import type { RoutedMessage } from "../protocol/message";
import { allShards, shardForTopic } from "../topics/shard-rule";
import { analyticsPoint, summarize, sysMessages, type MetricsSummary } from "./metrics";

export async function collectMetrics(env: Env): Promise<MetricsSummary> {
  const config = configFor(env);
  const [registries, shards] = await Promise.all([
    Promise.all(allShards(config.registryShardCount).map((i) => registryStub(env, i).stats())),
    Promise.all(allShards(config.shardCount).map((i) => topicShardStub(env, i).stats())),
  ]);
  return summarize(registries, shards);
}

/**
 * Publishes the `$SYS/broker/...` values as retained QoS 0 messages, routed like any publish.
 * Resolves with how many subscriptions matched them (0: nobody watches, the publisher may stop).
 */
export async function publishSys(env: Env, summary: MetricsSummary): Promise<number> {
  const config = configFor(env);
  const now = Date.now();
  const byShard = new Map<number, RoutedMessage[]>();
  for (const { topic, payload } of sysMessages(summary)) {
    const message: RoutedMessage = {
      id: `sys:${crypto.randomUUID()}`,
      origin: "",
      topic,
      payload: new TextEncoder().encode(payload),
      qos: 0,
      retain: true,
      receivedAt: now,
    };
    const index = shardForTopic(topic, config.shardCount, config.shardLevels);
    byShard.set(index, [...(byShard.get(index) ?? []), message]);
  }
  const matched = await Promise.all([...byShard].map(([i, messages]) => topicShardStub(env, i).publishMany(messages)));
  return matched.flat().reduce((a, b) => a + b, 0);
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
