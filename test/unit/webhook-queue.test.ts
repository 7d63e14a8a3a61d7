/**
 * A `webhook` action through its retryQueue (src/rules/webhook.ts, docs/RULES.md): what the session
 * enqueues (no secret value), and what the Worker's queue() handler does with each message: a 2xx
 * acknowledges it, anything else retries it with a doubling delay, and a message that is not ours or
 * whose rule is gone never makes a POST.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../src/config";
import type { RoutedMessage } from "../../src/protocol/message";
import { RuleEngine, type RuleSinks } from "../../src/rules/rule-engine";
import { bindingProblems, parseRules } from "../../src/rules/rules-config";
import {
  deliverQueuedWebhooks,
  retryDelaySeconds,
  type QueuedWebhook,
  type WebhookQueueMessage,
} from "../../src/rules/webhook";

const HOOK = {
  name: "notify",
  filter: "notify/#",
  actions: [
    { type: "webhook", url: "https://h.example/in", headers: { Authorization: "HOOK_TOKEN" }, retryQueue: "HOOK_Q" },
  ],
};
const rules = parseRules(JSON.stringify([HOOK]), DEFAULT_CONFIG);

/** A Queue message that records what the handler did with it. */
function queueMessage(body: unknown, attempts = 1) {
  const outcome: { acked?: boolean; retried?: { delaySeconds?: number } } = {};
  const message: WebhookQueueMessage = {
    body,
    attempts,
    ack: () => void (outcome.acked = true),
    retry: (options) => void (outcome.retried = options ?? {}),
  };
  return { message, outcome };
}

const queued = (over: Partial<QueuedWebhook> = {}): QueuedWebhook => ({
  kind: "rules.webhook",
  rule: "notify",
  action: 0,
  url: "https://h.example/in",
  body: '{"topic":"notify/a"}',
  ...over,
});

/** The consumer's world: each POST answered in turn from `answers` (a status, or "error"). */
function consumer(answers: (number | "error")[]) {
  const posts: { url: string; init: RequestInit }[] = [];
  const io = {
    rules,
    fetch: (url: string, init: RequestInit) => {
      posts.push({ url, init });
      const answer = answers.shift() ?? 200;
      if (answer === "error") return Promise.reject(new Error("connection refused"));
      return Promise.resolve(new Response(null, { status: answer }));
    },
    secret: (name: string) => (name === "HOOK_TOKEN" ? "Bearer s3cret" : undefined),
    now: () => 0,
  };
  return { io, posts };
}

describe("a webhook's retryQueue: configuration", () => {
  it("must name a binding, and that binding must be a Queue producer", () => {
    const bad = { ...HOOK, actions: [{ ...HOOK.actions[0], retryQueue: "no such" }] };
    expect(() => parseRules(JSON.stringify([bad]), DEFAULT_CONFIG)).toThrow(/retryQueue must name a Queue binding/);
    expect(bindingProblems(rules, { HOOK_TOKEN: "x" })).toEqual([
      "rule notify: no binding HOOK_Q (add [[queues.producers]] to wrangler.toml)",
    ]);
    expect(bindingProblems(rules, { HOOK_TOKEN: "x", HOOK_Q: { send: () => undefined } })).toEqual([]);
  });
});

describe("a webhook's retryQueue: the session", () => {
  it("enqueues the request without the secret's value, POSTs nothing, and the acknowledgement waits for the send", async () => {
    const sent: unknown[] = [];
    let accept: (() => void) | undefined;
    const fetches: string[] = [];
    const sinks: RuleSinks = {
      route: () => Promise.resolve(1),
      queue: () => ({ send: (body) => (sent.push(body), new Promise<void>((r) => (accept = r))) }),
      analytics: () => undefined,
      fetch: (url) => (fetches.push(url), Promise.resolve(new Response(""))),
      secret: () => "Bearer s3cret",
      sleep: () => Promise.resolve(),
      now: () => 0,
    };
    const engine = new RuleEngine(rules, { ...DEFAULT_CONFIG, maxDepth: 3, maxPayloadBytes: 1024 }, sinks);
    const message: RoutedMessage = {
      id: "c:1",
      topic: "notify/a",
      payload: new TextEncoder().encode("ring"),
      qos: 1,
      retain: false,
      origin: "c",
      receivedAt: 5,
    };
    let settled = false;
    const wait = engine.apply(message)!.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    expect(sent).toEqual([
      { kind: "rules.webhook", rule: "notify", action: 0, url: "https://h.example/in", body: expect.any(String) },
    ]);
    expect(JSON.parse((sent[0] as QueuedWebhook).body)).toMatchObject({
      rule: "notify",
      topic: "notify/a",
      payload: "ring",
    });
    expect(JSON.stringify(sent)).not.toContain("s3cret");
    accept!();
    await wait;
    expect(settled).toBe(true);
    expect(fetches).toEqual([]);
  });
});

describe("a webhook's retryQueue: the queue() handler", () => {
  it("POSTs with the secret's header read at send time, and acknowledges a 2xx", async () => {
    const { io, posts } = consumer([204]);
    const { message, outcome } = queueMessage(queued());
    await deliverQueuedWebhooks([message], io);
    expect(outcome).toEqual({ acked: true });
    expect(posts).toHaveLength(1);
    expect(posts[0]!.url).toBe("https://h.example/in");
    expect(posts[0]!.init.body).toBe('{"topic":"notify/a"}');
    expect(posts[0]!.init.headers).toEqual({ "content-type": "application/json", Authorization: "Bearer s3cret" });
  });

  it("retries a 5xx, a 4xx and a network error, each after 2^(attempts-1) s", async () => {
    const { io } = consumer([500, 404, "error"]);
    const messages = [queueMessage(queued(), 1), queueMessage(queued(), 2), queueMessage(queued(), 4)];
    await deliverQueuedWebhooks(
      messages.map((m) => m.message),
      io,
    );
    expect(messages.map((m) => m.outcome)).toEqual([
      { retried: { delaySeconds: 1 } },
      { retried: { delaySeconds: 2 } },
      { retried: { delaySeconds: 8 } },
    ]);
  });

  it("the retry delay doubles up to an hour", () => {
    expect([1, 2, 3, 10, 12, 13, 100].map(retryDelaySeconds)).toEqual([1, 2, 4, 512, 2048, 3600, 3600]);
  });

  it("a message that is not a queued webhook is retried (towards the dead-letter queue), never POSTed", async () => {
    const { io, posts } = consumer([]);
    const bodies = ["text", null, { ...queued(), kind: "other" }, { ...queued(), action: "0" }];
    const messages = bodies.map((b) => queueMessage(b));
    await deliverQueuedWebhooks(
      messages.map((m) => m.message),
      io,
    );
    expect(messages.map((m) => m.outcome)).toEqual(bodies.map(() => ({ retried: {} })));
    expect(posts).toEqual([]);
  });

  it("a webhook whose rule, action or URL is no longer in RULES is acknowledged and not POSTed anywhere", async () => {
    const { io, posts } = consumer([]);
    const gone = [queued({ rule: "other" }), queued({ action: 1 }), queued({ url: "https://evil.example/" })];
    const messages = gone.map((b) => queueMessage(b));
    await deliverQueuedWebhooks(
      messages.map((m) => m.message),
      io,
    );
    expect(messages.map((m) => m.outcome)).toEqual(gone.map(() => ({ acked: true })));
    expect(posts).toEqual([]);
  });
});
