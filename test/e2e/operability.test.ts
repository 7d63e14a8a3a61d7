/**
 * What an operator sees: `npm start`'s banner, one JSON log line per connection event (accepted,
 * refused with its reason, ended with its reason, a network drop included, without workerd's
 * "Uncaught Error"), and a bad variable reported in the log and by /health (503).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startBroker, stopProcessGroup } from "./global-setup";
import { rawClient } from "../support/clients";
import { uid } from "../support/ids";
import { until } from "../support/until";

interface LogLine {
  level: string;
  event: string;
  [field: string]: unknown;
}

/** The broker's JSON log lines in the output so far. */
function logLines(output: string): LogLine[] {
  return output
    .split("\n")
    .map((line) => line.replace(/\u001b\[[0-9;]*m/g, "").trim())
    .filter((line) => line.includes('{"level"'))
    .map((line) => JSON.parse(line.slice(line.indexOf('{"level"'))) as LogLine); // errors come as "✘ [ERROR] {...}"
}

describe("npm start", () => {
  let child: ChildProcess;
  let output = "";
  let port: number;
  const state = mkdtempSync(join(tmpdir(), "mqtt-start-"));

  beforeAll(async () => {
    port = await freePort();
    const inspector = await freePort();
    child = spawn(
      "npm",
      [
        "start",
        "--",
        "--port",
        String(port),
        "--ip",
        "127.0.0.1",
        "--inspector-port",
        String(inspector),
        "--persist-to",
        state,
      ],
      {
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
      },
    );
    child.stdout?.on("data", (d) => (output += d));
    child.stderr?.on("data", (d) => (output += d));
    await until(() => output.includes("· health /health"), "the banner", 60000, 100);
  }, 70000);

  afterAll(async () => {
    await stopProcessGroup(child.pid!, "SIGINT");
    rmSync(state, { recursive: true, force: true });
  });

  it("prints one banner line: where MQTT, the dashboard (with the dev admin token) and /health are", () => {
    const banner = output.split("\n").filter((line) => line.includes("· health /health"));
    expect(banner).toEqual([
      `MQTT ws://127.0.0.1:${port}/mqtt · dashboard http://127.0.0.1:${port}/dashboard (admin token: dev-admin) · health /health`,
    ]);
  });

  it("logs a connection accepted and ended by DISCONNECT, a network drop as an expected event, and a refusal with its code", async () => {
    const url = `ws://127.0.0.1:${port}/mqtt`;
    const polite = uid("polite");
    const c = await mqtt.connectAsync(url, { clientId: polite, protocolVersion: 5, reconnectPeriod: 0 });
    await c.endAsync();
    const dropped = uid("drop");
    const d = await mqtt.connectAsync(url, { clientId: dropped, protocolVersion: 5, reconnectPeriod: 0 });
    d.stream.destroy(); // no DISCONNECT: the TCP connection just ends
    const refused = uid("refused");
    const r = await rawClient(5, "mqtt", url);
    const connack = await r.connect({
      clientId: refused,
      will: { topic: "$SYS/forged", payload: Buffer.from("x"), qos: 0, retain: false },
    });
    expect(connack.reasonCode).toBe(0x87);
    r.close();
    const events = () => logLines(output).filter((l) => [polite, dropped, refused].includes(String(l.clientId)));
    await until(() => events().length >= 5, "five connection events", 10000).catch((err) => {
      throw new Error(`${err.message}: ${JSON.stringify(events())}`);
    });
    expect(events().map((l) => [l.event, l.clientId, l.reason, l.code])).toEqual(
      expect.arrayContaining([
        ["connection.accepted", polite, undefined, undefined],
        ["connection.ended", polite, "client DISCONNECT", "0x00"],
        ["connection.accepted", dropped, undefined, undefined],
        ["connection.ended", dropped, "network: the client's connection closed without DISCONNECT", undefined],
        ["connection.refused", refused, expect.stringContaining("$SYS"), "0x87"],
      ]),
    );
    expect(events().find((l) => l.event === "connection.accepted" && l.clientId === polite)).toMatchObject({
      level: "info",
      protocol: "5.0",
      remoteAddress: "127.0.0.1",
    });
    expect(output).not.toContain("Uncaught Error: Network connection lost");
  });

  it("writes a hostile client id inside one JSON line, escaped", async () => {
    const hostile = `${uid("evil")}\n{"level":"error","event":"forged"}\u2028\u001b[31m`;
    const c = await mqtt.connectAsync(`ws://127.0.0.1:${port}/mqtt`, {
      clientId: hostile,
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    await c.endAsync();
    await until(
      () => logLines(output).some((l) => l.event === "connection.ended" && l.clientId === hostile),
      "the hostile client's end",
      10000,
    );
    expect(logLines(output).some((l) => l.event === "forged")).toBe(false);
    expect(output).not.toContain("\u2028");
  });
});

describe("a bad variable", () => {
  let broker: Awaited<ReturnType<typeof startBroker>>;
  beforeAll(async () => {
    broker = await startBroker(
      {
        ALLOW_ANONYMOUS: "true",
        MAX_PACKET_SIZE: "abc",
        AUTH_USERS: JSON.stringify({ carol: "not-a-hash" }),
        LOG_LEVEL: "loud",
      },
      undefined,
      false,
    );
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it("makes /health answer 503 naming each variable and why, and the log say the same", async () => {
    const res = await fetch(`${broker.base}/health`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { status: string; problems: { variable: string; problem: string }[] };
    expect(body.status).toBe("misconfigured");
    expect(body.problems.map((p) => p.variable).sort()).toEqual(["AUTH_USERS", "LOG_LEVEL", "MAX_PACKET_SIZE"]);
    expect(body.problems.find((p) => p.variable === "MAX_PACKET_SIZE")?.problem).toContain('"abc"');
    const logged = logLines(broker.output()).filter((l) => l.event === "config.invalid");
    expect(logged.map((l) => l.variable).sort()).toEqual(["AUTH_USERS", "LOG_LEVEL", "MAX_PACKET_SIZE"]);
    expect(logged.every((l) => l.level === "error")).toBe(true);
  });

  it("refuses MQTT connections with 503 and the same message", async () => {
    const refusal = await new Promise<{ status?: number; body: string }>((resolve, reject) => {
      const socket = new WebSocket(`${broker.base.replace("http", "ws")}/mqtt`, "mqtt");
      socket.on("unexpected-response", (_req, res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode, body }));
      });
      socket.on("open", () => reject(new Error("the WebSocket opened")));
      socket.on("error", () => undefined);
    });
    expect(refusal.status).toBe(503);
    expect(refusal.body).toContain("MAX_PACKET_SIZE must be an integer");
  });
});
