/** Worker entry: the HTTP app (src/http/app.ts, the MQTT endpoint included) and the Durable Object classes. */
import { env } from "cloudflare:workers";
import { app, reportConfig } from "./http/app";
import type { Env } from "./env";
import { writeMetricsPoint } from "./observability/metrics-collector";

export { SessionObject } from "./session/session-object";
export { TopicShardObject } from "./topics/topic-shard-object";
export { ClientRegistryObject } from "./registry/client-registry-object";
export type { BrokerConfig } from "./config";

// Configuration problems are logged as the isolate starts, before any request.
reportConfig(env);

export default {
  fetch: app.fetch,
  // Cron trigger: one Workers Analytics Engine data point per run when METRICS is bound.
  scheduled: async (_controller: ScheduledController, env: Env) => {
    await writeMetricsPoint(env);
  },
} satisfies ExportedHandler<Env>;
