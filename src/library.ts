/**
 * The broker as a library, for your own Worker: install hooks, re-export the Durable Object classes
 * from your entry module, and serve the broker's endpoints (or mount them in your own Hono app).
 *
 *   import { createBroker } from "mqtt-workers-broker";
 *   const broker = createBroker({ hooks: { onPublish: async (ctx, m) => { ...; return m; } } });
 *   export const { SessionObject, TopicShardObject, ClientRegistryObject, BridgeObject } = broker;
 *   export default { fetch: broker.fetch, scheduled: broker.scheduled };
 *
 * Your wrangler.toml declares the same Durable Object bindings (SESSION, TOPIC_SHARD, REGISTRY, and
 * BRIDGE when BRIDGES is set) and migrations as this project's, and the `[[rules]]` Text entry for
 * mqtt.min.js (README, "Install it in your own Worker"). See examples/queue-forwarder. The package
 * ships this TypeScript source; wrangler bundles it.
 */
import { configFor } from "./config";
import { writeMetricsPoint } from "./observability/metrics-collector";
import type { Env } from "./env";
import { app } from "./http/app";
import { deliverQueuedWebhooks, webhookConsumerIO } from "./rules/webhook";
import { hookMessage, installHooks, type BrokerHooks, type HookPublish } from "./hooks";
import { BridgeObject } from "./bridge/bridge-object";
import { startBridges } from "./bridge/bridge-worker";
import { ClientRegistryObject } from "./registry/client-registry-object";
import { SessionObject } from "./session/session-object";
import { TopicShardObject } from "./topics/topic-shard-object";
import { brokerMessage, matchedOrThrow, routeFromWorker } from "./topics/shard-router";

export interface BrokerOptions<E> {
  hooks?: BrokerHooks<E>;
}

export function createBroker<E = Record<string, unknown>>(options: BrokerOptions<E> = {}) {
  installHooks(options.hooks ?? {});
  return {
    /**
     * The broker's HTTP surface: /mqtt, /api/v1/..., /metrics, /dashboard, /health. Like the broker's
     * own Worker (index.ts), an isolate's first request starts the bridges in BRIDGES.
     */
    fetch: (request: Request, env: E, ctx: ExecutionContext) => {
      startBridges(env as unknown as Env, (promise) => ctx.waitUntil(promise));
      return app.fetch(request, env as unknown as Env, ctx);
    },
    /**
     * A cron trigger handler: one Workers Analytics Engine data point per run when METRICS is bound;
     * it also starts the bridges when no request has reached this isolate yet.
     */
    scheduled: async (_controller: ScheduledController, env: E, ctx?: ExecutionContext) => {
      startBridges(env as unknown as Env, (promise) => (ctx ? ctx.waitUntil(promise) : void promise));
      await writeMetricsPoint(env as unknown as Env);
    },
    /** A Queue consumer handler for a `webhook` rule's retryQueue (docs/RULES.md). */
    queue: (batch: MessageBatch<unknown>, env: E) =>
      deliverQueuedWebhooks(batch.messages, webhookConsumerIO(env as Record<string, unknown>)),
    /** The Hono app, to mount under your own paths. */
    app,
    /**
     * Publishes from your own code (a Queue consumer, a cron trigger): routed like any publish.
     * Resolves with the subscribers matched; rejects when a QoS 1/2 message could not be made durable.
     */
    async publish(env: E, message: HookPublish): Promise<number> {
      const config = configFor(env as object);
      const routed = brokerMessage("http", hookMessage(message), Date.now());
      return matchedOrThrow(await routeFromWorker(env as unknown as Env, config, [routed]));
    },
    SessionObject,
    TopicShardObject,
    ClientRegistryObject,
    /** One per bridge in BRIDGES; export it (and bind it as BRIDGE) only if you use bridges. */
    BridgeObject,
  };
}

export type {
  BrokerHooks,
  HookContext,
  HookMessage,
  HookPublish,
  AuthenticateInput,
  AuthenticateResult,
  ConnectInfo,
} from "./hooks";
export type { Identity } from "./auth/acl";
export type { BrokerConfig } from "./config";
