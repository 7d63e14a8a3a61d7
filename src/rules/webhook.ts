/**
 * The `webhook` action's POST (docs/RULES.md "webhook"), both ways it is sent: from the publisher's
 * session, best effort (rule-engine.ts retries it in memory), or, when the action names a
 * `retryQueue`, through that Cloudflare Queue: the session sends a QueuedWebhook before the
 * acknowledgement, and the Worker's queue() handler (deliverQueuedWebhooks) POSTs it, acknowledging
 * the Queue message only on a 2xx and retrying it with backoff otherwise, so it is at-least-once up to
 * the consumer's max_retries, then goes to its dead-letter queue.
 *
 * No secret value is ever written in a Queue message: it holds the rule's name and the action's
 * position, and the consumer reads the URL and the headers' secrets from RULES and env at send time.
 */
import { configFor } from "../config";
import { SampledLog } from "../observability/log";
import { rulesFor, type Rule, type WebhookAction } from "./rules-config";

export const WEBHOOK_LIMITS = Object.freeze({
  /** Attempts of a best-effort webhook, and the waits between them. */
  attempts: 3,
  retryDelaysMs: [250, 1000],
  /** Each attempt is cut after this long, either way it is sent. */
  timeoutMs: 5000,
  /** Best-effort webhooks under way per Session object; one beyond that is not sent (counted as failed). */
  maxInFlight: 32,
  /** A queued webhook's next attempt waits 2^(attempts-1) seconds, at most this long. */
  maxRetryDelaySeconds: 3600,
});

/** The Queue message of a webhook sent through its retryQueue. */
export interface QueuedWebhook {
  /** Marks the message as ours, among whatever else a misconfigured consumer might be given. */
  kind: "rules.webhook";
  rule: string;
  /** The action's position in the rule's actions. */
  action: number;
  /** The URL when it was queued: a consumer whose RULES no longer has it there does not POST elsewhere. */
  url: string;
  /** The JSON the webhook POSTs (the queue message's fields, docs/RULES.md). */
  body: string;
}

/** The request headers of an action: each header's value read from the secret it names. */
export function webhookHeaders(action: WebhookAction, secret: (name: string) => string | undefined) {
  const headers: Record<string, string> = { "content-type": "application/json" };
  for (const [header, name] of action.headers) headers[header] = secret(name) ?? "";
  return headers;
}

/** What one POST came to: done, or the problem and whether another attempt may succeed. */
export type PostOutcome = { ok: true } | { ok: false; problem: Error; retryable: boolean };

/**
 * One POST, cut after WEBHOOK_LIMITS.timeoutMs. A network error, a timeout, 429 or a 5xx is worth
 * another attempt; another 4xx would be refused again.
 */
export async function postWebhook(
  fetcher: (url: string, init: RequestInit) => Promise<Response>,
  url: string,
  headers: Record<string, string>,
  body: string,
): Promise<PostOutcome> {
  try {
    const signal = AbortSignal.timeout(WEBHOOK_LIMITS.timeoutMs);
    const res = await fetcher(url, { method: "POST", headers, body, signal });
    await res.body?.cancel();
    if (res.ok) return { ok: true };
    const problem = new Error(`the webhook answered HTTP ${res.status}`);
    return { ok: false, problem, retryable: res.status >= 500 || res.status === 429 };
  } catch (err) {
    return { ok: false, problem: err instanceof Error ? err : new Error(String(err)), retryable: true };
  }
}

/** A Queue message as the queue() handler sees it (Cloudflare's Message, narrowed to what is used). */
export interface WebhookQueueMessage {
  readonly body: unknown;
  readonly attempts: number;
  ack(): void;
  retry(options?: { delaySeconds?: number }): void;
}

export interface WebhookConsumerIO {
  /** The rules of this Worker (RULES), as the sessions have them. */
  rules: readonly Rule[];
  fetch(url: string, init: RequestInit): Promise<Response>;
  secret(name: string): string | undefined;
  now(): number;
}

/** The consumer's world in a Worker: this env's RULES and secrets, and the runtime's fetch. */
export function webhookConsumerIO(env: Record<string, unknown>): WebhookConsumerIO {
  return {
    rules: rulesFor(env, configFor(env)),
    fetch: (url, init) => fetch(url, init),
    secret: (name) => (typeof env[name] === "string" ? env[name] : undefined),
    now: () => Date.now(),
  };
}

/** One sampled line per 10 s for the consumer's failures (a webhook that is down must not flood the log). */
const failureLog = new SampledLog("warn", "rule.webhook_retry");

/**
 * The queue() handler's work for a batch: POSTs each queued webhook (at once; a batch is at most the
 * consumer's max_batch_size, 100). A 2xx acknowledges the message; anything else, a 4xx included
 * (the Queue's retries and dead-letter queue are where an operator finds it), retries it after
 * 2^(attempts-1) s (at most maxRetryDelaySeconds). A message that is not a queued webhook is retried
 * too, so that it reaches the dead-letter queue rather than vanish. A webhook whose rule or action
 * is no longer in RULES (the configuration changed) is acknowledged and logged: its URL and secrets
 * are gone with it.
 */
export async function deliverQueuedWebhooks(messages: readonly WebhookQueueMessage[], io: WebhookConsumerIO) {
  await Promise.all(messages.map((message) => deliverOne(message, io)));
}

async function deliverOne(message: WebhookQueueMessage, io: WebhookConsumerIO): Promise<void> {
  const queued = asQueuedWebhook(message.body);
  if (!queued) {
    failureLog.record(io.now(), { rule: "", error: "a Queue message that is not a queued webhook" });
    return message.retry();
  }
  const action = io.rules.find((r) => r.name === queued.rule)?.actions[queued.action];
  if (action?.type !== "webhook" || action.url !== queued.url) {
    failureLog.record(io.now(), { rule: queued.rule, error: "its webhook is no longer in RULES: dropped" });
    return message.ack();
  }
  const outcome = await postWebhook(io.fetch, action.url, webhookHeaders(action, io.secret), queued.body);
  if (outcome.ok) return message.ack();
  failureLog.record(io.now(), { rule: queued.rule, error: outcome.problem.message, attempt: message.attempts });
  message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
}

/** The wait before a queued webhook's next attempt: 1 s after the first, doubling, at most an hour. */
export function retryDelaySeconds(attempts: number): number {
  return Math.min(2 ** Math.max(0, attempts - 1), WEBHOOK_LIMITS.maxRetryDelaySeconds);
}

function asQueuedWebhook(body: unknown): QueuedWebhook | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const b = body as Record<string, unknown>;
  const ok =
    b.kind === "rules.webhook" &&
    typeof b.rule === "string" &&
    Number.isInteger(b.action) &&
    typeof b.url === "string" &&
    typeof b.body === "string";
  return ok ? (b as unknown as QueuedWebhook) : undefined;
}
