/**
 * Runs the rules (rules-config.ts) on a message the publisher's session accepted, after the ACL and
 * the hooks, in publish order (docs/RULES.md). Pure: the session gives it its sinks (routing, Queue
 * producers). What it returns settles when every action the acknowledgement must wait for is done: a
 * `queue` send, and the routing of a QoS 1/2 republished copy; so they are at-least-once, and a
 * failure of one drops the publisher's connection unacknowledged, like a failed routing. A failing
 * action is counted and logged; nothing here waits on, or stops, another client.
 */
import type { QoS, RoutedMessage } from "../protocol/message";
import { topicMatches, type TopicLimits } from "../protocol/topic";
import { counters } from "../observability/counters";
import { SampledLog } from "../observability/log";
import { renderTemplate } from "./template";
import { evaluateWhere, resolveCompiledPath, type WhereInput, type WhereValue } from "./where";
import type { RuleCount } from "./rule-tally";
import { postWebhook, WEBHOOK_LIMITS, webhookHeaders, type QueuedWebhook } from "./webhook";
import type {
  AnalyticsAction,
  MessagePath,
  QueueAction,
  RepublishAction,
  Rule,
  RuleAction,
  WebhookAction,
} from "./rules-config";

/** What a rule's actions need from the session. */
export interface RuleSinks {
  /** Routes a message as the session routes its client's (numbered calls, so order holds). */
  route(message: RoutedMessage): Promise<number>;
  /** The Queue producer bound under this name (the config check saw that it exists). */
  queue(binding: string): { send(body: unknown, options?: { contentType?: "json" }): Promise<unknown> } | undefined;
  /** The Analytics Engine dataset bound under this name (the config check saw that it exists). */
  analytics(binding: string): { writeDataPoint(point: AnalyticsPoint): void } | undefined;
  /** POSTs for `webhook` actions (the runtime's fetch). */
  fetch(url: string, init: RequestInit): Promise<Response>;
  /** The value of a secret or variable a webhook header names (the config check saw that it exists). */
  secret(name: string): string | undefined;
  sleep(ms: number): Promise<void>;
  now(): number;
  /**
   * Work nothing waits for (a best-effort webhook, a QoS 0 copy): a Worker keeps its invocation
   * alive for it (waitUntil); a Durable Object needs nothing.
   */
  background?(work: Promise<unknown>): void;
  /** Counts a rule's outcome for /metrics (rule-tally.ts), for the client whose message it was. */
  count?(rule: string, outcome: keyof RuleCount, clientId: string): void;
  /** An action under way whose outcome `count` gets before work settles (the counts wait for it: rule-tally.ts). */
  counting?(work: Promise<unknown>): void;
}

export interface AnalyticsPoint {
  blobs: (string | null)[];
  doubles: number[];
  indexes?: string[];
}

export interface RuleSettings extends TopicLimits {
  /** Largest payload parsed as JSON for `payload.…` (RULES_MAX_PAYLOAD_BYTES); a larger one has no fields. */
  maxPayloadBytes: number;
  /** Republished copies one client message may lead to in a chain (RULES_MAX_DEPTH). */
  maxDepth: number;
}

/** The JSON a `queue` action sends (docs/RULES.md "The queue message"). */
export interface QueuedMessage {
  rule: string;
  /** The broker's id of the message: the same on a resend of a QoS 2 message, for a consumer to drop repeats. */
  id: string;
  topic: string;
  qos: QoS;
  retain: boolean;
  clientId: string;
  receivedAt: number;
  /** The payload as text when it is UTF-8, else `payloadBase64`. */
  payload?: string;
  payloadBase64?: string;
  userProperties?: [string, string][];
  contentType?: string;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A message as conditions and templates see it; its payload decoded and parsed at most once. */
class MessageView implements WhereInput {
  readonly topic: string;
  readonly qos: number;
  readonly retain: boolean;
  readonly clientId: string;
  readonly userProperties?: readonly (readonly [string, string])[];
  private text?: string | null;
  private parsed?: { value: unknown };

  constructor(
    readonly message: RoutedMessage,
    private readonly maxPayloadBytes: number,
  ) {
    this.topic = message.topic;
    this.qos = message.qos;
    this.retain = message.retain;
    this.clientId = message.origin;
    this.userProperties = message.properties?.userProperties;
  }

  /** The payload as text, or null when it is not UTF-8. */
  payloadText(): string | null {
    if (this.text === undefined) {
      try {
        this.text = utf8.decode(this.message.payload);
      } catch {
        this.text = null;
      }
    }
    return this.text;
  }

  json(): unknown {
    if (!this.parsed) {
      this.parsed = { value: undefined };
      const text = this.message.payload.length <= this.maxPayloadBytes ? this.payloadText() : null;
      try {
        if (text !== null) this.parsed.value = JSON.parse(text);
      } catch {
        // not JSON: every payload field is missing
      }
    }
    return this.parsed.value;
  }
}

export class RuleEngine {
  /** One sampled line per rule and 10 s for its failures (a broken queue must not flood the log). */
  private readonly failureLogs = new Map<string, SampledLog>();
  /** Webhook POSTs under way (with their retries), at most WEBHOOK_LIMITS.maxInFlight. */
  private webhooksInFlight = 0;

  constructor(
    private readonly rules: readonly Rule[],
    private readonly settings: RuleSettings,
    private readonly sinks: RuleSinks,
  ) {}

  /**
   * Runs the matching rules' actions, rule by rule in RULES order. Undefined when no rule matched
   * (no promise, no wait); else a promise that resolves when the acknowledgement may go.
   */
  apply(message: RoutedMessage, depth = 0): Promise<void> | undefined {
    const view = new MessageView(message, this.settings.maxPayloadBytes);
    const waits: Promise<unknown>[] = [];
    for (const rule of this.rules) {
      if (!topicMatches(rule.filter, message.topic)) continue;
      if (rule.where) {
        const outcome = evaluateWhere(rule.where, view);
        if (outcome.overrun) counters.ruleConditionOverruns++;
        if (outcome.fault) counters.ruleConditionFaults++;
        if (!outcome.matched) continue;
      }
      this.sinks.count?.(rule.name, "matched", message.origin);
      rule.actions.forEach((action, index) => {
        const wait = this.act(rule, action, index, view, depth);
        if (wait) waits.push(wait);
      });
    }
    return waits.length === 0 ? undefined : Promise.all(waits).then(() => undefined);
  }

  /** Starts one action; returns what the acknowledgement must wait for, if anything. */
  private act(rule: Rule, action: RuleAction, index: number, view: MessageView, depth: number) {
    counters.ruleActionsTaken++;
    if (action.type === "queue") return this.enqueue(rule, action, view);
    if (action.type === "republish") return this.republish(rule, action, index, view, depth);
    if (action.type === "webhook") return this.webhook(rule, action, index, view);
    this.writeDataPoint(rule, action, view);
    return undefined;
  }

  /**
   * One Workers Analytics Engine data point (best effort, as Analytics Engine is; nothing waits).
   * A blob is the value as text (missing, an object or an array: null); a double is the number (a
   * boolean 1 or 0; anything else 0); the index is the value as text ("" when it has none).
   */
  private writeDataPoint(rule: Rule, action: AnalyticsAction, view: MessageView): void {
    try {
      const dataset = this.sinks.analytics(action.binding);
      if (!dataset) throw new Error(`no binding ${action.binding}`);
      const value = (path: MessagePath) => resolveCompiledPath(path, view);
      dataset.writeDataPoint({
        blobs: action.blobs.map((path) => asText(value(path))),
        doubles: action.doubles.map((path) => asNumber(value(path))),
        indexes: action.index ? [asText(value(action.index)) ?? ""] : undefined,
      });
      this.succeeded(rule, view);
    } catch (err) {
      this.failed(rule, view, "analytics", err); // a blob or index over Analytics Engine's sizes, say
    }
  }

  private enqueue(rule: Rule, action: QueueAction, view: MessageView): Promise<unknown> {
    return this.send(rule, view, "queue", action.binding, messageBody(rule, view));
  }

  /** Sends a Queue message; a failure is counted and logged, and rejects (the acknowledgement waits on it). */
  private send(rule: Rule, view: MessageView, kind: string, binding: string, body: unknown): Promise<unknown> {
    const queue = this.sinks.queue(binding);
    if (!queue) return Promise.reject(this.failed(rule, view, kind, new Error(`no binding ${binding}`)));
    try {
      const sent = queue
        .send(body, { contentType: "json" })
        .then(() => this.succeeded(rule, view))
        .catch((err: unknown) => Promise.reject(this.failed(rule, view, kind, err)));
      this.sinks.counting?.(sent);
      return sent;
    } catch (err) {
      return Promise.reject(this.failed(rule, view, kind, err));
    }
  }

  /**
   * POSTs the message as JSON (the queue message's form). With a retryQueue: sends the request to
   * that Queue (no secret in it: webhook.ts) and the acknowledgement waits for the send, as for a
   * `queue` action; the Worker's queue() handler POSTs it. Without: POSTs it from here, retried
   * within WEBHOOK_LIMITS, never awaited (best effort).
   */
  private webhook(rule: Rule, action: WebhookAction, index: number, view: MessageView): Promise<unknown> | undefined {
    const body = JSON.stringify(messageBody(rule, view));
    if (action.retryQueue) {
      const queued: QueuedWebhook = { kind: "rules.webhook", rule: rule.name, action: index, url: action.url, body };
      return this.send(rule, view, "webhook", action.retryQueue, queued);
    }
    if (this.webhooksInFlight >= WEBHOOK_LIMITS.maxInFlight) {
      this.failed(rule, view, "webhook", new Error(`more than ${WEBHOOK_LIMITS.maxInFlight} webhooks in flight`));
      return undefined;
    }
    this.webhooksInFlight++;
    const posted = this.post(action.url, webhookHeaders(action, this.sinks.secret), body)
      .then(() => this.succeeded(rule, view))
      .catch((err: unknown) => void this.failed(rule, view, "webhook", err))
      .finally(() => this.webhooksInFlight--);
    this.sinks.counting?.(posted);
    this.sinks.background?.(posted);
    return undefined;
  }

  private async post(url: string, headers: Record<string, string>, body: string): Promise<void> {
    let problem: unknown;
    for (let attempt = 0; attempt < WEBHOOK_LIMITS.attempts; attempt++) {
      if (attempt > 0) await this.sinks.sleep(WEBHOOK_LIMITS.retryDelaysMs[attempt - 1] ?? 1000);
      const outcome = await postWebhook(this.sinks.fetch, url, headers, body);
      if (outcome.ok) return;
      problem = outcome.problem;
      if (!outcome.retryable) break;
    }
    throw problem;
  }

  /**
   * Routes a copy under the template's topic, with the action's QoS and retain flag; the copy runs
   * the rules in turn while the chain is shorter than maxDepth, so a rule that matches its own output
   * stops there. Its id derives from the original's, so a resent QoS 2 message makes the same copy.
   */
  private republish(rule: Rule, action: RepublishAction, index: number, view: MessageView, depth: number) {
    const rendered = renderTemplate(action.topic, view, this.settings);
    if ("problem" in rendered) {
      // Deterministic: failing the acknowledgement would only make the client resend for ever.
      this.failed(rule, view, "republish", new Error(rendered.problem));
      return undefined;
    }
    const { message } = view;
    const copy: RoutedMessage = {
      ...message,
      id: `${message.id}>${rule.name}.${index}`,
      topic: rendered.topic,
      qos: action.qos,
      retain: action.retain,
    };
    const routed = this.sinks
      .route(copy)
      .then(() => this.succeeded(rule, view))
      .catch((err: unknown) => Promise.reject(this.failed(rule, view, "republish", err)));
    this.sinks.counting?.(routed);
    let chained: Promise<void> | undefined;
    if (depth + 1 < this.settings.maxDepth) chained = this.apply(copy, depth + 1);
    else if (this.rules.some((r) => topicMatches(r.filter, copy.topic))) counters.ruleChainsCut++;
    // A QoS 0 copy is at most once: nothing waits for it, and its failure only counts.
    const wait = action.qos === 0 ? undefined : routed;
    if (action.qos === 0) {
      const settled = routed.catch(() => undefined);
      this.sinks.background?.(settled);
    }
    if (chained) return wait ? Promise.all([wait, chained]) : chained;
    return wait;
  }

  private succeeded(rule: Rule, view: MessageView): void {
    this.sinks.count?.(rule.name, "ok", view.clientId);
  }

  /** Counts and logs a failed action (rule names are the operator's; the error is ours or the runtime's). */
  private failed(rule: Rule, view: MessageView, action: string, err: unknown): unknown {
    counters.ruleActionsFailed++;
    this.sinks.count?.(rule.name, "failed", view.clientId);
    let log = this.failureLogs.get(rule.name);
    if (!log) this.failureLogs.set(rule.name, (log = new SampledLog("warn", "rule.action_failed")));
    log.record(this.sinks.now(), { rule: rule.name, action, error: err instanceof Error ? err.message : String(err) });
    return err;
  }
}

/** The JSON a `queue` action sends and a `webhook` action POSTs (docs/RULES.md "The message"). */
function messageBody(rule: Rule, view: MessageView): QueuedMessage {
  const { message } = view;
  const body: QueuedMessage = {
    rule: rule.name,
    id: message.id,
    topic: message.topic,
    qos: message.qos,
    retain: message.retain,
    clientId: message.origin,
    receivedAt: message.receivedAt,
  };
  const text = view.payloadText();
  if (text !== null) body.payload = text;
  else body.payloadBase64 = base64(message.payload);
  const props = message.properties;
  if (props?.userProperties?.length) body.userProperties = props.userProperties.map(([k, v]) => [k, v]);
  if (props?.contentType !== undefined) body.contentType = props.contentType;
  return body;
}

function asText(value: WhereValue): string | null {
  return typeof value === "string" || typeof value === "number" || typeof value === "boolean" ? String(value) : null;
}

function asNumber(value: WhereValue): number {
  if (typeof value === "number") return value;
  return value === true ? 1 : 0;
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}
