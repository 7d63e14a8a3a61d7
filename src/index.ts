/** Worker entry: the HTTP app (src/http/app.ts, the MQTT endpoint included) and the Durable Object classes. */
import { env } from "cloudflare:workers";
import { app, reportConfig } from "./http/app";
import type { Env } from "./env";
import { writeMetricsPoint } from "./observability/metrics-collector";
import { startBridges } from "./bridge/bridge-worker";
import { deliverQueuedWebhooks, webhookConsumerIO } from "./rules/webhook";

export { SessionObject } from "./session/session-object";
export { TopicShardObject } from "./topics/topic-shard-object";
export { ClientRegistryObject } from "./registry/client-registry-object";
export { BridgeObject } from "./bridge/bridge-object";
export type { BrokerConfig } from "./config";

// Configuration problems are logged as the isolate starts, before any request.
reportConfig(env);

export default {
  fetch: (request: Request, env: Env, ctx: ExecutionContext) => {
    startBridges(env, (promise) => ctx.waitUntil(promise));
    return app.fetch(request, env, ctx);
  },
  // Cron trigger: one Workers Analytics Engine data point per run when METRICS is bound.
  // It also starts the bridges when no request has reached this isolate yet.
  scheduled: async (_controller: ScheduledController, env: Env, ctx?: ExecutionContext) => {
    startBridges(env, (promise) => (ctx ? ctx.waitUntil(promise) : void promise));
    await writeMetricsPoint(env);
  },
  // The consumer of a webhook action's retryQueue ([[queues.consumers]]): POSTs each, retried on failure.
  queue: (batch: MessageBatch<unknown>, env: Env) => deliverQueuedWebhooks(batch.messages, webhookConsumerIO(env)),
} satisfies ExportedHandler<Env>;
