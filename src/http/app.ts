/**
 * The Worker's whole HTTP surface (Hono): `/` and `/mqtt` (the MQTT WebSocket endpoint,
 * gateway/upgrade.ts), `/health`, the HTTP API, metrics and dashboard (the route groups beside this
 * file), and the debug counters.
 */
import { Hono } from "hono";
import { callsByObjectSnapshot, isolateId, sessionBusySnapshot, snapshot } from "../observability/counters";
import type { Env } from "../env";
import { isWebSocketUpgrade, mqttEndpoint } from "../gateway/upgrade";
import { mountPublishEndpoints } from "./publish-endpoints";
import { mountAdminEndpoints } from "./admin-endpoints";
import { mountOpenApiEndpoint } from "./openapi";
import { configProblemsFor } from "../config-check";
import { applyLogLevel, logEvent } from "../observability/log";

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
  for (const { variable, problem } of configProblemsFor(env))
    logEvent("error", "config.invalid", { variable, problem });
}

app.use("*", async (c, next) => {
  reportConfig(c.env);
  await next();
});

// Some clients (the MQTT.js CLI among them) open the WebSocket at "/": accept MQTT there too.
app.get("/", (c) =>
  isWebSocketUpgrade(c) ? mqttEndpoint(c) : c.text("MQTT broker. Connect MQTT 3.1.1 or 5.0 over WebSocket at /mqtt\n"),
);
// 503 with every configuration problem, so a monitor (and `npm start`) sees a broken deployment.
app.get("/health", (c) => {
  const problems = configProblemsFor(c.env);
  return problems.length ? c.json({ status: "misconfigured", problems }, 503) : c.json({ status: "ok" });
});
app.all("/mqtt", (c) => mqttEndpoint(c));
mountPublishEndpoints(app);
mountAdminEndpoints(app);
mountOpenApiEndpoint(app);

// This isolate's invocation and write counters, the calls into each counted object (`byObject`), each
// counted Session object's busy ms (`sessionBusyByObject`) and the isolate's identity (a restart resets
// the counts), for the benchmark; off unless DEBUG_COUNTERS is set.
app.get("/debug/counters", (c) =>
  c.env.DEBUG_COUNTERS === "true"
    ? c.json({
        ...snapshot(),
        byObject: callsByObjectSnapshot(),
        sessionBusyByObject: sessionBusySnapshot(),
        isolate: isolateId(),
      })
    : c.text("Not found. The MQTT endpoint is /mqtt\n", 404),
);

app.notFound((c) =>
  c.req.path.startsWith("/api/")
    ? c.json({ error: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404)
    : c.text("Not found. The MQTT endpoint is /mqtt\n", 404),
);
