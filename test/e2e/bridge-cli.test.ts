/**
 * The bridge as a command (`mqtt-workers-broker bridge`): its help and version, its errors, where it
 * listens, how it stops, and its TLS listener with Debian's mosquitto_pub against a certificate
 * made here. Carrying MQTT is test/e2e/tcp-bridge.test.ts.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import mqttPacket from "mqtt-packet";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { until } from "../support/until";
import { brokerUrl, closeAll, connect, recorder } from "../support/clients";
import { uid } from "../support/ids";

const run = promisify(execFile);
const cli = fileURLToPath(new URL("../../bin/cli.mjs", import.meta.url));
const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};
/** Debian's mosquitto-clients and openssl: CI has them (.ci/run); elsewhere the TLS test is skipped without them. */
const hasTlsTools = existsSync("/usr/bin/mosquitto_pub") && existsSync("/usr/bin/openssl");
if (!hasTlsTools && process.env.CI)
  throw new Error("CI must have mosquitto-clients and openssl installed (see .ci/run)");
/** A stack trace line, which no error of the command line may show. */
const STACK = /^\s+at /m;

interface Exited {
  code: number | null;
  stdout: string;
  stderr: string;
}

const started: ChildProcess[] = [];

function spawnCli(args: string[]): { child: ChildProcess; output: () => Exited; exited: Promise<Exited> } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  started.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const output = () => ({ code: child.exitCode, stdout, stderr });
  const exited = new Promise<Exited>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return { child, output, exited };
}

/** Runs the command to its end (help, version, refusals). */
const runCli = (args: string[]): Promise<Exited> => spawnCli(args).exited;

interface Bridge {
  child: ChildProcess;
  /** The first line it printed, naming the address it listens on. */
  line: string;
  port: number;
  exited: Promise<Exited>;
}

/** Starts a bridge and resolves once it says where it listens. */
async function startBridge(args: string[]): Promise<Bridge> {
  const { child, output, exited } = spawnCli(["bridge", "--url", brokerUrl(), ...args]);
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", () => {
      const m = /^bridge listening on .*$/m.exec(output().stdout);
      if (m) resolve(m[0]);
    });
    void exited.then((e) => reject(new Error(`bridge exited ${e.code}: ${e.stdout}${e.stderr}`)));
  });
  return { child, line, port: Number(/:(\d+)\b/.exec(line)![1]), exited };
}

/** How the bridge exited, or undefined if it still runs after `ms`. */
function exitWithin(bridge: Bridge, ms: number): Promise<Exited | undefined> {
  return Promise.race([bridge.exited, new Promise<undefined>((r) => setTimeout(r, ms))]);
}

/** Whether a TCP connection to host:port is accepted. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(port, host);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A raw TCP device through the bridge, connected to the broker (its CONNACK arrived). */
async function device(port: number, allowHalfOpen: boolean) {
  const socket = createConnection({ port, host: "127.0.0.1", allowHalfOpen });
  const seen: string[] = [];
  socket.on("end", () => seen.push("FIN"));
  socket.on("error", (err) => seen.push(`error ${(err as NodeJS.ErrnoException).code}`));
  socket.on("close", () => seen.push("close"));
  await new Promise<void>((r) => socket.once("connect", () => r()));
  socket.write(
    mqttPacket.generate({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clientId: uid("sig"),
      clean: true,
      keepalive: 60,
    }),
  );
  const connack = await new Promise<Buffer>((resolve) => socket.once("data", resolve));
  expect([...connack]).toEqual([0x20, 0x02, 0x00, 0x00]);
  return { socket, seen };
}

afterEach(async () => {
  await closeAll();
  for (const child of started.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

describe("bridge command line", () => {
  it("prints its options with --help (exit 0)", async () => {
    for (const args of [["--help"], ["bridge", "--help"], ["-h"]]) {
      const { code, stdout } = await runCli(args);
      expect(code).toBe(0);
      for (const flag of [
        "--url",
        "--listen",
        "--host",
        "--tls-cert",
        "--tls-key",
        "--max-buffer",
        "--quiet",
        "--version",
        "SIGINT",
      ]) {
        expect(stdout).toContain(flag);
      }
      expect(stdout).toMatch(/default 127\.0\.0\.1/);
      expect(stdout).toMatch(/8883 with TLS/);
    }
  });

  it("prints the package version with --version (exit 0)", async () => {
    expect(await runCli(["--version"])).toEqual({ code: 0, stdout: `${version}\n`, stderr: "" });
  });

  it.each([
    [
      "a URL that is not WebSocket",
      ["bridge", "--url", "http://example.com/mqtt"],
      /--url "http:\/\/example\.com\/mqtt" must start with ws:\/\/ or wss:\/\//,
    ],
    ["a URL that does not parse", ["bridge", "--url", "not a url"], /--url "not a url" is not a URL/],
    ["no URL", ["bridge"], /--url is required/],
    ["an unknown flag", ["bridge", "--url", "ws://127.0.0.1:1/mqtt", "--colour"], /Unknown option '--colour'/],
    [
      "a port out of range",
      ["bridge", "--url", "ws://127.0.0.1:1/mqtt", "--listen", "70000"],
      /--listen must be a whole number from 0 to 65535/,
    ],
    [
      "a missing TLS file",
      [
        "bridge",
        "--url",
        "ws://127.0.0.1:1/mqtt",
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
      ],
      /cannot read --tls-cert "\/nonexistent\/cert\.pem": no such file/,
    ],
    [
      "a certificate without its key",
      ["bridge", "--url", "ws://127.0.0.1:1/mqtt", "--tls-cert", "/nonexistent/cert.pem"],
      /TLS needs both --tls-cert and --tls-key/,
    ],
    ["an unknown command", ["brige"], /unknown command "brige"/],
  ])("refuses %s in one line, exit 2, no stack trace", async (_what, args, message) => {
    const { code, stdout, stderr } = await runCli(args);
    expect(stderr).toMatch(message);
    expect(stderr).not.toMatch(STACK);
    expect(stdout).toBe("");
    expect(code).toBe(2);
  });

  it("says the port is in use, exit 1, no stack trace", async () => {
    const taken: Server = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const { port } = taken.address() as { port: number };
    try {
      const { code, stderr } = await runCli(["bridge", "--url", brokerUrl(), "--listen", String(port)]);
      expect(stderr.trim()).toBe(
        `mqtt-workers-broker: cannot listen on 127.0.0.1:${port}: the port is already in use (another bridge or broker?); choose another with --listen`,
      );
      expect(code).toBe(1);
    } finally {
      taken.close();
    }
  });

  it("listens on 127.0.0.1 only unless --host says otherwise", async () => {
    const local = await startBridge(["--listen", "0"]);
    expect(local.line).toBe(`bridge listening on 127.0.0.1:${local.port} -> ${brokerUrl()}`);
    expect(await accepts("127.0.0.1", local.port)).toBe(true);
    // Another address of this machine, when it has one: reachable with --host 0.0.0.0 (the control),
    // refused by the default.
    const other = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
    if (!other) return;
    expect(await accepts(other, local.port)).toBe(false);
    const everywhere = await startBridge(["--listen", "0", "--host", "0.0.0.0"]);
    expect(everywhere.line).toBe(`bridge listening on 0.0.0.0:${everywhere.port} -> ${brokerUrl()}`);
    expect(await accepts(other, everywhere.port)).toBe(true);
  });

  it.each(["SIGINT", "SIGTERM"] as const)(
    "%s with a device connected: the device gets a FIN, exit 0 at once",
    async (signal) => {
      const bridge = await startBridge(["--listen", "0"]);
      const { seen } = await device(bridge.port, false);
      const t0 = Date.now();
      bridge.child.kill(signal);
      expect((await exitWithin(bridge, 6000))?.code, `bridge still running 6 s after ${signal}`).toBe(0);
      const ms = Date.now() - t0;
      // the device answered the FIN with its own: nothing is left to wait for (not the 2 s linger
      // for devices that keep their side open, nor the 3 s bound); measured about 115 ms
      expect(ms).toBeLessThan(1500);
      expect(seen.slice(0, 2)).toEqual(["FIN", "close"]);
      expect(await accepts("127.0.0.1", bridge.port)).toBe(false);
    },
  );

  it("SIGINT with a device that never closes its side: exit 0 within the 3 s bound", async () => {
    const bridge = await startBridge(["--listen", "0"]);
    const { socket, seen } = await device(bridge.port, true);
    const t0 = Date.now();
    bridge.child.kill("SIGINT");
    expect((await exitWithin(bridge, 6000))?.code, "bridge still running 6 s after SIGINT").toBe(0);
    // the 3 s bound plus the time a loaded machine takes to end a process; measured 2.1 s, as the
    // 2 s linger after the broker's close ends such a device first
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(seen[0]).toBe("FIN");
    socket.destroy();
  });

  it("uses port 1883 by default and 8883 with TLS", async () => {
    // Either it listens there or says that port is taken: both name the default.
    const plain = spawnCli(["bridge", "--url", brokerUrl()]);
    const tlsDir = mkdtempSync(join(tmpdir(), "bridge-tls-"));
    try {
      await until(
        () => /127\.0\.0\.1:1883\b/.test(plain.output().stdout + plain.output().stderr),
        "the plain default port",
      );
      if (!hasTlsTools) return;
      const { cert, key } = await selfSigned(tlsDir);
      const tls = spawnCli(["bridge", "--url", brokerUrl(), "--tls-cert", cert, "--tls-key", key]);
      await until(() => /127\.0\.0\.1:8883\b/.test(tls.output().stdout + tls.output().stderr), "the TLS default port");
    } finally {
      rmSync(tlsDir, { recursive: true, force: true });
    }
  });
});

/** A self-signed certificate for localhost and 127.0.0.1, made with openssl into `dir`. */
async function selfSigned(dir: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  await run("/usr/bin/openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "1",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]);
  return { cert, key };
}

describe.skipIf(!hasTlsTools)("bridge TLS listener", () => {
  let dir: string;
  let cert: string;
  let key: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bridge-tls-"));
    ({ cert, key } = await selfSigned(dir));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("carries mosquitto_pub over TLS (--cafile with a self-signed certificate) to a WebSocket subscriber", async () => {
    const bridge = await startBridge(["--listen", "0", "--tls-cert", cert, "--tls-key", key]);
    expect(bridge.line).toBe(`bridge listening on 127.0.0.1:${bridge.port} (TLS) -> ${brokerUrl()}`);
    const topic = `tls/${uid()}`;
    const sub = await connect(5);
    const rec = recorder(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    await run("mosquitto_pub", [
      "--cafile",
      cert,
      "-h",
      "localhost",
      "-p",
      String(bridge.port),
      "-V",
      "mqttv5",
      "-q",
      "1",
      "-t",
      topic,
      "-m",
      "over TLS",
      "-i",
      uid("mpub-tls"),
    ]);
    const [m] = await rec.waitFor(1);
    expect(m.payload).toBe("over TLS");
    expect(m.packet.qos).toBe(1);
  });
});
