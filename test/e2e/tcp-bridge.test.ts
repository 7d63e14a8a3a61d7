/**
 * The TCP bridge (`mqtt-workers-broker bridge`) carrying Debian's mosquitto_pub / mosquitto_sub and
 * MQTT.js over plain TCP to the real broker, next to WebSocket clients.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createConnection } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../src/config";
import { brokerUrl, closeAll, connect, recorder } from "../support/clients";
import { uid } from "../support/ids";
import { until } from "../support/until";

const run = promisify(execFile);
const floodScript = fileURLToPath(new URL("./clients/tcp_flood_then_read.py", import.meta.url));
/** Debian's mosquitto-clients: CI installs them (.ci/run); elsewhere the suite is skipped without them. */
const hasMosquitto = existsSync("/usr/bin/mosquitto_pub") && existsSync("/usr/bin/mosquitto_sub");
if (!hasMosquitto && process.env.CI) throw new Error("CI must have mosquitto-clients installed (see .ci/run)");
let bridge: ChildProcess;
let port = 0;

beforeAll(async () => {
  if (!hasMosquitto) return;
  bridge = spawn(
    process.execPath,
    ["bin/cli.mjs", "bridge", "--listen", "0", "--host", "127.0.0.1", "--url", brokerUrl(), "--quiet"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  port = await new Promise<number>((resolve, reject) => {
    let out = "";
    bridge.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on [^:]+:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    bridge.on("exit", (code) => reject(new Error(`bridge exited ${code}: ${out}`)));
  });
});

afterAll(async () => {
  await closeAll();
  bridge?.kill("SIGTERM");
});

describe.skipIf(!hasMosquitto)("TCP bridge", () => {
  it("carries mosquitto_pub (5.0, QoS 1) to a WebSocket subscriber", async () => {
    const topic = `tcp/${uid()}`;
    const sub = await connect(5);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    await run("mosquitto_pub", [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-V",
      "mqttv5",
      "-q",
      "1",
      "-t",
      topic,
      "-m",
      "from mosquitto_pub",
      "-i",
      uid("mpub"),
    ]);
    const [m] = await rec.waitFor(1);
    expect(m.payload).toBe("from mosquitto_pub");
    expect(m.packet.qos).toBe(1);
  });

  it("carries a WebSocket publish to mosquitto_sub (3.1.1), retained and live", async () => {
    const topic = `tcp/${uid()}`;
    const pub = await connect(5);
    await pub.publishAsync(topic, "retained one", { qos: 1, retain: true });
    const sub = run("mosquitto_sub", [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-V",
      "mqttv311",
      "-t",
      topic,
      "-C",
      "2",
      "-W",
      "10",
      "-v",
      "-i",
      uid("msub"),
    ]);
    // The retained message arrives once mosquitto_sub has subscribed: then the live one can be sent.
    let printed = "";
    sub.child.stdout!.on("data", (d) => (printed += d));
    await until(() => printed.includes("retained one"), "mosquitto_sub to print the retained message");
    await pub.publishAsync(topic, "live one", { qos: 0 });
    const { stdout } = await sub;
    expect(stdout.trim().split("\n")).toEqual([`${topic} retained one`, `${topic} live one`]);
  });

  it("keeps a mosquitto_sub persistent session across reconnects (QoS 1 queued while away)", async () => {
    const topic = `tcp/${uid()}`;
    const id = uid("msub-persist");
    const args = [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-V",
      "mqttv5",
      "-q",
      "1",
      "-t",
      topic,
      "-i",
      id,
      "-c",
      "-x",
      "300",
    ];
    await run("mosquitto_sub", [...args, "-C", "1", "-W", "2"]).catch(() => undefined); // subscribes, times out
    const pub = await connect(5);
    await pub.publishAsync(topic, "while away", { qos: 1 });
    const { stdout } = await run("mosquitto_sub", [...args, "-C", "1", "-W", "10"]);
    expect(stdout.trim()).toBe("while away");
  });

  it("carries MQTT.js over TCP, a device that sends packets split across TCP segments", async () => {
    const topic = `tcp/${uid()}`;
    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
      protocolVersion: 5,
      reconnectPeriod: 0,
      clientId: uid("tcpjs"),
    });
    const rec = recorder(device);
    await device.subscribeAsync(topic, { qos: 1 });
    const ws = await connect(4);
    await ws.publishAsync(topic, "to the tcp device", { qos: 1 });
    expect((await rec.waitFor(1))[0].payload).toBe("to the tcp device");
    await device.endAsync();
    // a raw TCP client writing CONNECT one byte at a time still gets its CONNACK
    const raw = createConnection(port, "127.0.0.1");
    const bytes = Buffer.from([
      0x10, 0x0d, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, 0x78,
    ]);
    await new Promise<void>((r) => raw.once("connect", () => r()));
    raw.setNoDelay(true); // each write its own segment (no Nagle coalescing)
    for (const b of bytes) await new Promise((r) => raw.write(Buffer.from([b]), r)); // each byte handed to the kernel before the next
    const connack = await new Promise<Buffer>((resolve) => raw.once("data", resolve));
    expect([...connack]).toEqual([0x20, 0x02, 0x00, 0x00]);
    raw.destroy();
  });

  it("hands the broker's DISCONNECT to a device that still writes after the broker closed (FIN, no reset)", async () => {
    // Like Eclipse Paho's test_flow_control2: more QoS 2 PUBLISHes than the broker takes (Receive
    // Maximum, or here first the publish rate: 0x96), then each PUBREC answered with a PUBREL after
    // the broker closed. A bridge that reset the connection made those writes fail (EPIPE) before
    // the device read the DISCONNECT.
    const { stdout } = await run(
      "python3",
      [floodScript, "127.0.0.1", String(port), uid("flood"), String(DEFAULT_CONFIG.receiveMaximum + 1)],
      { timeout: 30000 },
    );
    expect(stdout.trim()).toMatch(/^disconnect 0x(93|96)$/);
  });

  it("closes the TCP connection when the broker closes it (protocol error)", async () => {
    const raw = createConnection(port, "127.0.0.1");
    await new Promise<void>((r) => raw.once("connect", () => r()));
    raw.write(Buffer.from([0x30, 0x02, 0x00, 0x00])); // PUBLISH before CONNECT
    let closed = false;
    raw.once("close", () => (closed = true));
    await until(() => closed, "the bridge to close the TCP connection", 5000);
  });
});
