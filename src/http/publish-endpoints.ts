/**
 * `POST /api/v1/publish` and `POST /api/v1/publish/batch`: publishing without an MQTT connection.
 * Authenticated by a bearer token (api-auth.ts), checked by the same ACL, routed to the topic's
 * shard exactly like an MQTT PUBLISH. For QoS 1/2 the answer comes only once every matching
 * session holds the message durably; a failure answers 503 and the caller retries.
 */
import type { Context, Hono } from "hono";
import { isAllowed } from "../auth/acl";
import { authConfigFor } from "../auth/auth-config";
import { configFor } from "../config";
import type { Env } from "../env";
import {
  brokerMessage,
  matchedOrThrow,
  routeFromWorker,
  type RouteResult,
  type ShardLayout,
} from "../topics/shard-router";
import { apiTokensFrom, HTTP_CLIENT_ID, publisherIdentity } from "./api-auth";
import { crossSiteRefusal } from "./cross-site";
import { parsePublishBody, type PublishDraft } from "./publish-request";
import { currentHooks, fromHook, hookMessage, runHook, type HookContext } from "../hooks";
import { isBrokerOnlyTopic, topicNameError } from "../protocol/topic";
import type { RoutedMessage } from "../protocol/message";
import { ruleEngineFor } from "../rules/rule-runner";
import { reportRuleCounts } from "../session/session-reporter";

/** Largest request body read, in bytes (a batch of maximum-size messages must fit). */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

type Ctx = Context<{ Bindings: Env }>;

export function mountPublishEndpoints(app: Hono<{ Bindings: Env }>): void {
  app.post("/api/v1/publish", (c) => publish(c, false));
  app.post("/api/v1/publish/batch", (c) => publish(c, true));
}

export const jsonError = (c: Ctx, status: number, error: string, headers: Record<string, string> = {}) =>
  c.json({ error }, status as 400, headers);

async function publish(c: Ctx, batch: boolean): Promise<Response> {
  const tokens = apiTokensFrom(c.env);
  const auth = authConfigFor(c.env);
  if (!tokens.admin && !tokens.publish && !auth.jwt) {
    return jsonError(
      c,
      403,
      "the HTTP publish API is off: set the API_TOKEN (or ADMIN_TOKEN) secret, or JWT_SECRET / JWT_JWKS_URL",
    );
  }
  const identity = await publisherIdentity(c.req.header("Authorization"), tokens, auth);
  if (!identity)
    return jsonError(c, 401, "missing or invalid bearer token", { "WWW-Authenticate": 'Bearer realm="mqtt-broker"' });
  // After the token check (no token: 401). The admin token also works as cached Basic credentials in
  // a browser: no publishing on another site's behalf.
  const crossSite = crossSiteRefusal(c.req);
  if (crossSite) return jsonError(c, 403, crossSite);
  if (!(c.req.header("Content-Type") ?? "").toLowerCase().startsWith("application/json")) {
    return jsonError(c, 415, "send the message as JSON (Content-Type: application/json)");
  }
  const length = Number(c.req.header("Content-Length") ?? 0);
  if (length > MAX_BODY_BYTES) return jsonError(c, 413, `the body is larger than ${MAX_BODY_BYTES} bytes`);
  const text = await c.req.text();
  if (text.length > MAX_BODY_BYTES) return jsonError(c, 413, `the body is larger than ${MAX_BODY_BYTES} bytes`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return jsonError(c, 400, "the body is not valid JSON");
  }
  const config = configFor(c.env);
  const parsed = parsePublishBody(body, config, batch);
  if (!parsed.ok) return jsonError(c, parsed.status, parsed.error);
  // `$SYS/...` is the broker's own, as for MQTT clients (protocol/topic.ts), then the ACL
  const denied = parsed.messages.findIndex(
    (m) => isBrokerOnlyTopic(m.topic) || !isAllowed(auth.acl, identity, HTTP_CLIENT_ID, "publish", m.topic),
  );
  if (denied >= 0) {
    const where = batch ? `messages[${denied}]: ` : "";
    const topic = parsed.messages[denied]!.topic; // findIndex found it
    const why = isBrokerOnlyTopic(topic)
      ? "only the broker publishes $SYS topics, so may not publish"
      : "not authorized to publish";
    return jsonError(c, 403, `${where}${why} to ${JSON.stringify(topic)}`);
  }
  // The user's hooks see HTTP publishes as client "http-api" (src/hooks.ts).
  const hooks = currentHooks();
  const ctx: HookContext = {
    env: c.env,
    clientId: HTTP_CLIENT_ID,
    identity,
    publish: async (p) => {
      return matchedOrThrow(await routeDrafts(c.env, [hookMessage(p)], config));
    },
  };
  if (hooks.authorizePublish) {
    for (const [i, m] of parsed.messages.entries()) {
      if (!(await runHook("authorizePublish", false, () => hooks.authorizePublish!(ctx, { ...m })))) {
        return jsonError(
          c,
          403,
          `${batch ? `messages[${i}]: ` : ""}not authorized to publish to ${JSON.stringify(m.topic)}`,
        );
      }
    }
  }
  const transformed = hooks.onPublish
    ? await Promise.all(
        parsed.messages.map((m) =>
          runHook("onPublish", undefined, () => hooks.onPublish!(ctx, { ...m })).then((r) =>
            r === undefined ? m : r && fromHook(r),
          ),
        ),
      )
    : parsed.messages;
  const kept = transformed.flatMap((m, i) => (m === null || topicNameError(m.topic, config) ? [] : [[i, m] as const]));
  const now = Date.now();
  const messages = kept.map(([, m]) => brokerMessage("http", m, now));
  const routed = await routeWithRules(c, messages, config);
  // A message the hook dropped is accepted and matched nobody.
  const results: RouteResult[] = parsed.messages.map(() => ({ id: `http:dropped`, matched: 0 }));
  kept.forEach(([i], k) => (results[i] = routed[k]!)); // one result per kept message
  const failed = results.some((r) => "error" in r);
  if (!batch) {
    const only = results[0]!; // one message, one result
    return "error" in only ? jsonError(c, 503, `not delivered, retry: ${only.error}`) : c.json(only);
  }
  return c.json({ results }, failed ? 503 : 200);
}

/**
 * Routes the messages and runs the operator's rules on each, in order, as a session does for its
 * client's (docs/RULES.md "Where rules run"): a QoS 1/2 message's result waits for its rules'
 * `queue` actions (and the routing of its QoS 1/2 copies); one that failed answers as a failed
 * routing does (503: retry; the message was routed, so a retry may deliver it twice, as QoS 1 allows).
 * A rule's republished copies are routed from here too. Work nothing waits for runs in waitUntil.
 */
async function routeWithRules(c: Ctx, messages: RoutedMessage[], layout: ShardLayout): Promise<RouteResult[]> {
  const background = (work: Promise<unknown>) => c.executionCtx.waitUntil(work);
  const rules = ruleEngineFor(c.env, {
    route: async (m) => matchedOrThrow(await routeFromWorker(c.env, layout, [m])),
    report: (clientId, counts) => background(reportRuleCounts(c.env, configFor(c.env), clientId, counts)),
    background,
  });
  const routing = routeFromWorker(c.env, layout, messages);
  const ruled = messages.map((m): Promise<string | undefined> | undefined => {
    const wait = rules?.apply(m);
    if (!wait) return undefined;
    if (m.qos === 0) return void background(wait.catch(() => undefined)); // at most once: nothing waits
    return wait.then(
      () => undefined,
      (err: unknown) => (err instanceof Error ? err.message : String(err)),
    );
  });
  const [results, problems] = await Promise.all([routing, Promise.all(ruled)]);
  return results.map((r, k) => {
    const problem = problems[k];
    return problem && !("error" in r) ? { id: r.id, error: `a rule's action failed: ${problem}` } : r;
  });
}

/** Routes HTTP-published messages (ids `http:...`), each to its topic's shard, in order per shard. */
export function routeDrafts(env: Env, drafts: PublishDraft[], layout: ShardLayout): Promise<RouteResult[]> {
  const now = Date.now();
  return routeFromWorker(
    env,
    layout,
    drafts.map((d) => brokerMessage("http", d, now)),
  );
}
