/**
 * Example: the broker as a library in your own Worker, with a hook at every moment.
 * - authenticate: devices named `device-*` log in with the password `key-<name>`; `blocked` is refused;
 *   everyone else falls through to the broker's built-in methods (here: anonymous allowed).
 * - authorizePublish: nobody publishes under `readonly/` (and `crash/` shows a throwing hook).
 * - authorizeSubscribe: nobody subscribes under `private/`.
 * - onPublish: `raw/<device>` is rewritten to `telemetry/<device>` with a JSON envelope; `spam/...` is
 *   dropped; `alerts/...` is also sent to a Cloudflare Queue.
 * - onConnect / onDisconnect: announced on `events/connected/<id>` and `events/disconnected/<id>`.
 * The Queue consumer below publishes what it receives on `forwarded/<topic>`, so the round trip is visible.
 */
import { createBroker, type BrokerHooks } from "mqtt-workers-broker";

interface Env {
  FORWARD_QUEUE: Queue<{ topic: string; payload: string; clientId: string }>;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

const hooks: BrokerHooks<Env> = {
  authenticate({ username, password }) {
    if (username === "blocked") return { allow: false, reason: "not-authorized" };
    if (username?.startsWith("device-")) {
      const ok = password !== undefined && text(password) === `key-${username}`;
      return ok ? { allow: true, identity: { username, roles: ["device"] } } : { allow: false };
    }
    return undefined; // the broker's own methods decide
  },
  authorizePublish(_ctx, message) {
    // A bug in a hook (here on purpose, for the tests) refuses the action; the session carries on.
    if (message.topic.startsWith("crash/")) throw new Error("a bug in user code");
    return !message.topic.startsWith("readonly/");
  },
  authorizeSubscribe(_ctx, filter) {
    return !filter.startsWith("private/");
  },
  async onPublish(ctx, message) {
    if (message.topic.startsWith("spam/")) return null;
    if (message.topic.startsWith("alerts/")) {
      await ctx.env.FORWARD_QUEUE.send({
        topic: message.topic,
        payload: text(message.payload),
        clientId: ctx.clientId,
      });
      return message;
    }
    const raw = /^raw\/([^/]+)$/.exec(message.topic);
    if (raw) {
      const envelope = { device: raw[1], by: ctx.identity.username ?? ctx.clientId, value: text(message.payload) };
      return { ...message, topic: `telemetry/${raw[1]}`, payload: new TextEncoder().encode(JSON.stringify(envelope)) };
    }
    return message;
  },
  async onConnect(ctx, info) {
    await ctx.publish({
      topic: `events/connected/${ctx.clientId}`,
      payload: JSON.stringify({ version: info.protocolVersion, user: ctx.identity.username ?? null }),
    });
  },
  async onDisconnect(ctx) {
    await ctx.publish({ topic: `events/disconnected/${ctx.clientId}`, payload: "bye" });
  },
};

const broker = createBroker<Env>({ hooks });

export const { SessionObject, TopicShardObject, ClientRegistryObject, BridgeObject } = broker;

export default {
  fetch: broker.fetch,
  scheduled: broker.scheduled,
  async queue(batch: MessageBatch<{ topic: string; payload: string; clientId: string }>, env: Env): Promise<void> {
    for (const message of batch.messages) {
      await broker.publish(env, { topic: `forwarded/${message.body.topic}`, payload: message.body.payload, qos: 1 });
      message.ack();
    }
  },
} satisfies ExportedHandler<Env, { topic: string; payload: string; clientId: string }>;
