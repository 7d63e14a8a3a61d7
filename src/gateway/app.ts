/** The Worker's HTTP surface (Hono): the MQTT WebSocket endpoint and a health check. */
import { Hono, type Context } from "hono";
import { AuthConfigError, authConfigFor } from "../auth/auth-config";
import { ConfigError, configFor } from "../config";
import { snapshot } from "../observability/counters";
import type { Env } from "../env";
import { GatewayConnection } from "./gateway-connection";
import { mountPublishRoutes } from "../api/publish-routes";
import { mountAdminRoutes } from "../api/admin-routes";

/** Subprotocols we speak, in order of preference [MQTT-6.0.0-3]. */
const SUBPROTOCOLS = ["mqtt", "mqttv3.1"];

export const app = new Hono<{ Bindings: Env }>();

const isUpgrade = (c: Context) => c.req.header("Upgrade")?.toLowerCase() === "websocket";

// Some clients (the MQTT.js CLI among them) open the WebSocket at "/": accept MQTT there too.
app.get("/", (c) => (isUpgrade(c) ? mqttEndpoint(c) : c.text("MQTT broker. Connect MQTT 3.1.1 or 5.0 over WebSocket at /mqtt\n")));
app.get("/health", (c) => c.json({ status: "ok" }));
app.all("/mqtt", (c) => mqttEndpoint(c));
mountPublishRoutes(app);
mountAdminRoutes(app);

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
  let config;
  let auth;
  try {
    config = configFor(c.env);
    auth = authConfigFor(c.env);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof AuthConfigError) return c.text(`Broker misconfigured: ${err.message}\n`, 500);
    throw err;
  }
  const remoteAddress = c.req.header("CF-Connecting-IP");
  if (c.env.CONNECT_LIMITER && c.env.CONNECT_RATE_LIMIT !== "off") {
    // Connection attempts per client address (Workers rate limiting binding, per location)
    const { success } = await c.env.CONNECT_LIMITER.limit({ key: remoteAddress ?? "unknown" });
    if (!success) return c.text("Too many connection attempts from this address; retry later\n", 429, { "Retry-After": "10" });
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
