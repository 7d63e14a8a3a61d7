/**
 * The admin API (JSON, ADMIN_TOKEN): connected clients (paged), one session, disconnect, delete a
 * session, retained messages and subscriptions by filter; and the dashboard. Every call fans out to
 * the registry or topic shards that hold the answer; nothing here sits on the message path.
 * State-changing calls pass the cross-site check first (cross-site.ts).
 */
import type { Context, Hono } from "hono";
import { configFor } from "../config";
import { bridgeStatuses } from "../bridge/bridge-worker";
import { registryStub, sessionStub, topicShardStub, type Env } from "../env";
import type { RoutedMessage } from "../protocol/message";
import { topicFilterError } from "../protocol/topic";
import { MAX_LIST } from "../registry/client-registry";
import { allShards, shardsForFilter } from "../topics/shard-rule";
import { collectMetrics } from "../observability/metrics-collector";
import { renderPrometheus } from "../observability/metrics";
import { apiTokensFrom, isAdmin } from "./api-auth";
import { crossSiteRefusal } from "./cross-site";
import {
  DASHBOARD_HEADERS,
  DASHBOARD_PAGE_HEADERS,
  DASHBOARD_SCRIPT_PATH,
  DASHBOARD_STYLE_PATH,
  MQTT_BUNDLE_PATH,
  dashboardHtml,
} from "../dashboard/page";
import { DASHBOARD_SCRIPT } from "../dashboard/client-script";
import { DASHBOARD_CSS } from "../dashboard/styles";
import { MQTT_BROWSER_BUNDLE } from "../dashboard/mqtt-bundle";
import { jsonError } from "./publish-endpoints";
import { codePointCompare, collectOverview, iso, mergeClientPages, mergeSubscriptions, retainedJson } from "./overview";

type Ctx = Context<{ Bindings: Env }>;

/** Default page size of list endpoints (`?limit=` up to MAX_LIST). */
const DEFAULT_LIMIT = 100;

export function mountAdminEndpoints(app: Hono<{ Bindings: Env }>): void {
  // "/x/*" also matches "/x" itself (registering both ran the check twice).
  app.use("/api/v1/clients/*", adminOnly);
  app.use("/api/v1/sessions/*", adminOnly);
  app.use("/api/v1/client/*", adminOnly);
  app.use("/api/v1/session", adminOnly);
  app.use("/api/v1/retained", adminOnly);
  app.use("/api/v1/subscriptions", adminOnly);
  app.use("/api/v1/metrics", adminOnly);
  app.use("/api/v1/bridges", adminOnly);
  app.use("/api/v1/overview", adminOnly);
  app.use("/metrics", adminOnly);
  app.use("/dashboard", adminOnly);

  app.get("/dashboard", (c) => c.html(dashboardHtml(), 200, DASHBOARD_PAGE_HEADERS));
  // The page's script and styles hold no data (the code is public): served without the token.
  app.get(DASHBOARD_SCRIPT_PATH, (c) =>
    c.body(DASHBOARD_SCRIPT, 200, { ...DASHBOARD_HEADERS, "Content-Type": "text/javascript; charset=utf-8" }),
  );
  app.get(MQTT_BUNDLE_PATH, (c) =>
    c.body(MQTT_BROWSER_BUNDLE, 200, { ...DASHBOARD_HEADERS, "Content-Type": "text/javascript; charset=utf-8" }),
  );
  app.get(DASHBOARD_STYLE_PATH, (c) =>
    c.body(DASHBOARD_CSS, 200, { ...DASHBOARD_HEADERS, "Content-Type": "text/css; charset=utf-8" }),
  );

  // Prometheus scrapes with `authorization: Bearer <ADMIN_TOKEN>` (bearer_token in its config).
  app.get("/metrics", async (c) =>
    c.text(renderPrometheus(...(await Promise.all([collectMetrics(c.env), bridgeStatuses(c.env)]))), 200, {
      "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
    }),
  );
  app.get("/api/v1/metrics", async (c) =>
    c.json({ ...(await collectMetrics(c.env)), collectedAt: new Date().toISOString() }),
  );

  // Each broker bridge's state, from its object (a call wakes it: it is always on anyway).
  app.get("/api/v1/bridges", async (c) => c.json({ bridges: await bridgeStatuses(c.env) }));

  // The dashboard's one call per refresh: figures, a page of clients, subscriptions, retained (overview.ts).
  app.get("/api/v1/overview", async (c) => {
    const query = filterAndLimit(c, "retained");
    if ("error" in query) return jsonError(c, 400, query.error);
    return c.json(
      await collectOverview(c.env, {
        prefix: c.req.query("prefix") ?? "",
        after: c.req.query("after") ?? "",
        limit: query.limit,
        retained: query.filter,
      }),
    );
  });

  // Paged by cursor: `next` is the last id of this page, to pass as `after`; `prefix` searches by id.
  app.get("/api/v1/clients", async (c) => {
    const limit = pageSize(c);
    if (limit === undefined) return jsonError(c, 400, `limit: an integer from 1 to ${MAX_LIST}`);
    const after = c.req.query("after") ?? "";
    const prefix = c.req.query("prefix") ?? "";
    const { registryShardCount } = configFor(c.env);
    const pages = await Promise.all(
      allShards(registryShardCount).map((i) => registryStub(c.env, i).list(after, limit + 1, prefix)),
    );
    return c.json(mergeClientPages(pages, limit));
  });

  // Each call on one client id has two forms: the id as a path segment, and `?clientId=`, which
  // reaches every id: URL normalisation removes "." and ".." segments (and %2e / %2E spellings).
  app.get("/api/v1/clients/:clientId", (c) => describeClient(c, c.req.param("clientId")));
  app.get("/api/v1/client", (c) => withQueryClientId(c, describeClient));
  app.post("/api/v1/clients/:clientId/disconnect", (c) => disconnectClient(c, c.req.param("clientId")));
  app.post("/api/v1/client/disconnect", (c) => withQueryClientId(c, disconnectClient));
  app.delete("/api/v1/sessions/:clientId", (c) => deleteSession(c, c.req.param("clientId")));
  app.delete("/api/v1/session", (c) => withQueryClientId(c, deleteSession));

  app.get("/api/v1/retained", async (c) => {
    const query = filterAndLimit(c);
    if ("error" in query) return jsonError(c, 400, query.error);
    const found = await Promise.all(
      shardsFor(c, query.filter).map((i) => topicShardStub(c.env, i).listRetained(query.filter, query.limit + 1)),
    );
    const all = (found.flat() as RoutedMessage[]).sort((a, b) => codePointCompare(a.topic, b.topic));
    return c.json({
      retained: all.slice(0, query.limit).map((m) => retainedJson(m)),
      truncated: all.length > query.limit,
    });
  });

  app.delete("/api/v1/retained", async (c) => {
    if (c.req.query("filter") === undefined)
      return jsonError(c, 400, "filter: required (use # to delete every retained message)");
    const query = filterAndLimit(c);
    if ("error" in query) return jsonError(c, 400, query.error);
    const counts = await Promise.all(
      shardsFor(c, query.filter).map((i) => topicShardStub(c.env, i).deleteRetained(query.filter)),
    );
    return c.json({ deleted: counts.reduce((a, b) => a + b, 0) });
  });

  app.get("/api/v1/subscriptions", async (c) => {
    const query = filterAndLimit(c);
    if ("error" in query) return jsonError(c, 400, query.error);
    const clientId = c.req.query("clientId");
    // A subscription with a wildcard in its first levels lives in every shard: list it once.
    const found = await Promise.all(
      shardsFor(c, query.filter).map((i) =>
        topicShardStub(c.env, i).listSubscriptions(query.filter, clientId, query.limit + 1),
      ),
    );
    return c.json(mergeSubscriptions(found, query.limit));
  });
}

async function describeClient(c: Ctx, clientId: string): Promise<Response> {
  const session = await sessionStub(c.env, clientId).describe();
  if (!session) return jsonError(c, 404, `no session for client ${JSON.stringify(clientId)}`);
  return c.json({ ...session, connectedAt: iso(session.connectedAt), expiresAt: iso(session.expiresAt) });
}

async function disconnectClient(c: Ctx, clientId: string): Promise<Response> {
  const done = await sessionStub(c.env, clientId).adminDisconnect();
  return done
    ? c.json({ clientId, disconnected: true })
    : jsonError(c, 404, `client ${JSON.stringify(clientId)} is not connected`);
}

async function deleteSession(c: Ctx, clientId: string): Promise<Response> {
  const done = await sessionStub(c.env, clientId).adminDelete();
  return done
    ? c.json({ clientId, deleted: true })
    : jsonError(c, 404, `no session for client ${JSON.stringify(clientId)}`);
}

/** Runs `handler` on `?clientId=`; an empty id names no session (the broker assigns one instead). */
function withQueryClientId(
  c: Ctx,
  handler: (c: Ctx, clientId: string) => Promise<Response>,
): Promise<Response> | Response {
  const clientId = c.req.query("clientId");
  return clientId
    ? handler(c, clientId)
    : jsonError(c, 400, "clientId: required (the client id, URL-encoded, in the query string)");
}

async function adminOnly(c: Ctx, next: () => Promise<void>): Promise<Response | void> {
  c.header("X-Content-Type-Options", "nosniff");
  // Before the token check: a cross-site request gets no 401 either (no Basic prompt on another site's behalf).
  const crossSite = crossSiteRefusal(c.req);
  if (crossSite) return jsonError(c, 403, crossSite);
  const tokens = apiTokensFrom(c.env);
  if (!tokens.admin) return jsonError(c, 403, "the admin API is off: set the ADMIN_TOKEN secret");
  if (!(await isAdmin(c.req.header("Authorization"), tokens))) {
    // Basic as well as Bearer: a browser opening /dashboard asks for the token (as the password).
    return jsonError(c, 401, "missing or invalid admin token", {
      "WWW-Authenticate": 'Basic realm="mqtt-broker", Bearer realm="mqtt-broker"',
    });
  }
  await next();
}

function pageSize(c: Ctx): number | undefined {
  const raw = c.req.query("limit");
  if (raw === undefined) return DEFAULT_LIMIT;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 1 && n <= MAX_LIST ? n : undefined;
}

function filterAndLimit(c: Ctx, name = "filter"): { filter: string; limit: number } | { error: string } {
  const filter = c.req.query(name) ?? "#";
  const config = configFor(c.env);
  const problem = topicFilterError(filter, config);
  if (problem) return { error: `${name}: ${problem}` };
  const limit = pageSize(c);
  if (limit === undefined) return { error: `limit: an integer from 1 to ${MAX_LIST}` };
  return { filter, limit };
}

function shardsFor(c: Ctx, filter: string): number[] {
  const { shardCount, shardLevels } = configFor(c.env);
  return shardsForFilter(filter, shardCount, shardLevels);
}
