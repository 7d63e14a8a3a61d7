/**
 * The MQTT-over-WebSocket endpoint (`/mqtt`, and `/` for clients that open it there): checks the
 * upgrade, negotiates the subprotocol, refuses a misconfigured broker and an address over the
 * connection rate limit, then hands the accepted WebSocket to a GatewayConnection.
 */
import type { Context } from "hono";
import { authConfigFor } from "../auth/auth-config";
import { configFor } from "../config";
import { configProblemsFor } from "../config-check";
import type { Env } from "../env";
import { SampledLog } from "../observability/log";
import { GatewayConnection } from "./connection";

/** Subprotocols we speak, in order of preference [MQTT-6.0.0-3]. */
const SUBPROTOCOLS = ["mqtt", "mqttv3.1"];

/** At most one log line per 10 s per isolate for connection attempts over the rate limit. */
const rateLimitLog = new SampledLog("warn", "connect.rate_limited");

export const isWebSocketUpgrade = (c: Context) => c.req.header("Upgrade")?.toLowerCase() === "websocket";

export async function mqttEndpoint(c: Context<{ Bindings: Env }>): Promise<Response> {
  if (c.req.method !== "GET") return c.text("Use GET with a WebSocket upgrade\n", 405);
  if (!isWebSocketUpgrade(c)) {
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
  const { 0: clientSide, 1: serverSide } = new WebSocketPair();
  serverSide.accept();
  const waitUntil = (work: Promise<unknown>) => c.executionCtx.waitUntil(work);
  new GatewayConnection(serverSide, c.env, config, auth, remoteAddress, waitUntil).start();
  const headers: Record<string, string> = protocol ? { "Sec-WebSocket-Protocol": protocol } : {};
  return new Response(null, { status: 101, webSocket: clientSide, headers });
}
