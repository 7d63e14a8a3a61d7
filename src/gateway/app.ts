/** The Worker's HTTP surface (Hono): the MQTT WebSocket endpoint and a health check. */
import { Hono, type Context } from "hono";
import { authConfigFor } from "../auth/auth-config";
import { configFor } from "../config";
import { snapshot } from "../observability/counters";
import type { Env } from "../env";
import { GatewayConnection } from "./connection";
import { mountPublishRoutes } from "../api/publish-routes";
import { mountAdminRoutes } from "../api/admin-routes";
import { mountOpenApiRoute } from "../api/openapi";
import { configProblemsFor } from "../config-check";
import { applyLogLevel, logEvent, SampledLog } from "../observability/log";

/** Subprotocols we speak, in order of preference [MQTT-6.0.0-3]. */
const SUBPROTOCOLS = ["mqtt", "mqttv3.1"];

export const app = new Hono<{ Bindings: Env }>();

let reported = false;

/**
 * Once per isolate: applies LOG_LEVEL and logs every configuration problem with its variable.
 * Called when the isolate starts (src/index.ts) and on each request (a no-op after the first), so
 * a bad variable shows in the log whether or not anyone connects.
 */
export function reportConfig(env: object): void {
  if (reported) return;
  reported = true;
  applyLogLevel((env as Env).LOG_LEVEL);
  for (const { variable, problem } of configProblemsFor(env)) logEvent("error", "config.invalid", { variable, problem });
}

app.use("*", async (c, next) => {
  reportConfig(c.env);
  await next();
});

/** At most one log line per 10 s per isolate for connection attempts over the rate limit. */
const rateLimitLog = new SampledLog("warn", "connect.rate_limited");

const isUpgrade = (c: Context) => c.req.header("Upgrade")?.toLowerCase() === "websocket";

// Some clients (the MQTT.js CLI among them) open the WebSocket at "/": accept MQTT there too.
app.get("/", (c) => (isUpgrade(c) ? mqttEndpoint(c) : c.text("MQTT broker. Connect MQTT 3.1.1 or 5.0 over WebSocket at /mqtt\n")));
// 503 with every configuration problem, so a monitor (and `npm start`) sees a broken deployment.
app.get("/health", (c) => {
  const problems = configProblemsFor(c.env);
  return problems.length ? c.json({ status: "misconfigured", problems }, 503) : c.json({ status: "ok" });
});
app.all("/mqtt", (c) => mqttEndpoint(c));
mountPublishRoutes(app);
mountAdminRoutes(app);
mountOpenApiRoute(app);

// This isolate's invocation and write counters, for the benchmark; off unless DEBUG_COUNTERS is set.
app.get("/debug/counters", (c) =>
  c.env.DEBUG_COUNTERS === "true" ? c.json(snapshot()) : c.text("Not found. The MQTT endpoint is /mqtt\n", 404),
);

async function mqttEndpoint(c: Context<{ Bindings: Env }>): Promise<Response> {
  if (c.req.method !== "GET") return c.text("Use GET with a WebSocket upgrade\n", 405);
  if (!isUpgrade(c)) {
    return c.text("This endpoint speaks MQTT over WebSocket: send a WebSocket upgrade (subprotocol mqtt)\n", 426, {
      Upgrade: "websocket",
    });
  }
  const offered = (c.req.header("Sec-WebSocket-Protocol") ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  const protocol = SUBPROTOCOLS.find((p) => offered.includes(p));
  if (offered.length > 0 && !protocol) {
    return c.text(`Unsupported WebSocket subprotocol; use one of: ${SUBPROTOCOLS.join(", ")}\n`, 400);
  }
  const problems = configProblemsFor(c.env);
  if (problems.length) return c.text(`Broker misconfigured: ${problems.map((p) => p.problem).join("; ")}\n`, 503);
  const config = configFor(c.env);
  const auth = authConfigFor(c.env);
  const remoteAddress = c.req.header("CF-Connecting-IP");
  if (c.env.CONNECT_LIMITER && c.env.CONNECT_RATE_LIMIT !== "off") {
    // Connection attempts per client address (Workers rate limiting binding, per location)
    const { success } = await c.env.CONNECT_LIMITER.limit({ key: remoteAddress ?? "unknown" });
    if (!success) {
      rateLimitLog.record(Date.now(), { remoteAddress });
      return c.text("Too many connection attempts from this address; retry later\n", 429, { "Retry-After": "10" });
    }
  }
  const pair = new WebSocketPair();
  const [clientSide, serverSide] = Object.values(pair);
  serverSide.accept();
  new GatewayConnection(serverSide, c.env, config, auth, remoteAddress).start();
  const headers: Record<string, string> = protocol ? { "Sec-WebSocket-Protocol": protocol } : {};
  return new Response(null, { status: 101, webSocket: clientSide, headers });
}

app.notFound((c) =>
  c.req.path.startsWith("/api/") ? c.json({ error: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404) : c.text("Not found. The MQTT endpoint is /mqtt\n", 404),
);
