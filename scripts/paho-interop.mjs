#!/usr/bin/env node
/**
 * Runs the Eclipse Paho interoperability suites (github.com/eclipse/paho.mqtt.testing,
 * `interoperability/client_test.py` for 3.1.1 and `client_test5.py` for 5.0) against this broker,
 * over plain TCP through our bridge, with the policy the suites expect: subscriptions to
 * `test/nosubscribe` refused, Server Keep Alive 60.
 *
 *   npm run interop:paho -- /path/to/paho.mqtt.testing     (or PAHO_TESTING=/path/to/it)
 *
 * Fetches nothing: it takes an existing checkout. Needs python3 (standard library only). Starts
 * `wrangler dev` with its own state and the bridge on free ports, runs both suites, prints their
 * results, stops everything and exits non-zero when a test failed.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const checkout = process.argv[2] ?? process.env.PAHO_TESTING;
const suites = checkout && resolve(checkout, "interoperability");
if (!suites || !existsSync(join(suites, "client_test5.py"))) {
  console.error("usage: npm run interop:paho -- <path to a paho.mqtt.testing checkout>  (or PAHO_TESTING=<path>)");
  process.exit(2);
}

/** The suites' expectations, as configuration (interoperability/README.md of the suites). */
const VARS = {
  ALLOW_ANONYMOUS: "true",
  ACL: JSON.stringify([{ allow: false, action: "subscribe", topics: ["test/nosubscribe"] }]),
  ACL_DEFAULT: "allow",
  // the suites' reference broker refuses test/nosubscribe with 0x80, which §3.9.3 allows a server
  // that does not reveal why; our default is 0x87 "Not authorized"
  ACL_DENIAL_REASON: "unspecified",
  MAX_KEEP_ALIVE: "60",
};

function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

/** A child in its own process group (wrangler spawns workerd), with its output kept for errors. */
function start(command, args, options = {}) {
  const child = spawn(command, args, { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"], ...options });
  child.log = "";
  child.stdout.on("data", (d) => (child.log += d));
  child.stderr.on("data", (d) => (child.log += d));
  return child;
}

async function stop(child) {
  for (const signal of ["SIGTERM", "SIGKILL"]) {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      return; // already gone
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function waitFor(what, child, check) {
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited early:\n${child.log}`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not start:\n${child.log}`);
}

/**
 * Runs one suite in its directory (it imports its own `mqtt` package). The suites read -h/-p with
 * getopt but then hand the same argv to unittest.main, which rejects them, so unittest gets the
 * script name only; and they test `o in ("--help")` (a substring test), so -h means help: the host
 * goes as --hostname=.
 */
function runSuite(file, port) {
  const driver = [
    "import sys, types, unittest",
    "sys.path.insert(0, '.')",
    // unittest.main looks for tests in sys.modules['__main__']: make the suite that module.
    `suite = types.ModuleType('__main__'); suite.__file__ = ${JSON.stringify(file)}`,
    "sys.modules['__main__'] = suite",
    "main = unittest.main",
    "unittest.main = lambda *a, **k: main(*a, **{**k, 'argv': [sys.argv[0]]})",
    `sys.argv = [${JSON.stringify(file)}, '--hostname=127.0.0.1', '-p', '${port}']`,
    `exec(compile(open(${JSON.stringify(file)}).read(), ${JSON.stringify(file)}, 'exec'), suite.__dict__)`,
  ].join("\n");
  return new Promise((ok) => {
    const child = spawn("python3", ["-c", driver], { cwd: suites, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("close", (code) => ok({ code, output }));
  });
}

/** "Ran 27 tests" and "OK" / "FAILED (failures=1)" from unittest's summary, with the failing names. */
function summary(name, { code, output }) {
  const ran = /Ran (\d+) tests?/.exec(output)?.[1] ?? "?";
  const failed = [...output.matchAll(/^(?:FAIL|ERROR): (\S+)/gm)].map((m) => m[1]);
  const passed = ran === "?" ? "?" : Number(ran) - failed.length;
  return `${name}: ${passed}/${ran} passed${failed.length ? `; failed: ${failed.join(", ")}` : ""}${code === 0 ? "" : ` (exit ${code})`}`;
}

const state = mkdtempSync(join(tmpdir(), "paho-interop-"));
const children = [];
let exitCode = 1;
try {
  const [httpPort, inspectorPort, tcpPort] = [await freePort(), await freePort(), await freePort()];
  const vars = Object.entries(VARS).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const broker = start(
    "npx",
    [
      "wrangler",
      "dev",
      "--port",
      String(httpPort),
      "--inspector-port",
      String(inspectorPort),
      "--ip",
      "127.0.0.1",
      "--persist-to",
      state,
      ...vars,
    ],
    { env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
  );
  children.push(broker);
  await waitFor("wrangler dev", broker, async () => (await fetch(`http://127.0.0.1:${httpPort}/health`)).ok);
  const bridge = start("node", [
    "bin/cli.mjs",
    "bridge",
    "--quiet",
    "--host",
    "127.0.0.1",
    "--listen",
    String(tcpPort),
    "--url",
    `ws://127.0.0.1:${httpPort}/mqtt`,
  ]);
  children.push(bridge);
  await waitFor(
    "the bridge",
    bridge,
    () =>
      new Promise((ok) => {
        const probe = createServer()
          .once("error", () => ok(true))
          .listen(tcpPort, "127.0.0.1", () => probe.close(() => ok(false)));
      }),
  );
  const results = [];
  for (const [name, file] of [
    ["MQTT 3.1.1 (client_test.py)", "client_test.py"],
    ["MQTT 5.0 (client_test5.py)", "client_test5.py"],
  ]) {
    const result = await runSuite(file, tcpPort);
    if (process.env.PAHO_VERBOSE || result.code !== 0) console.log(result.output);
    results.push([name, result]);
  }
  for (const [name, result] of results) console.log(summary(name, result));
  exitCode = results.every(([, r]) => r.code === 0 && /Ran [1-9]/.test(r.output)) ? 0 : 1;
} catch (err) {
  console.error(err.message ?? err);
} finally {
  for (const child of children.reverse()) await stop(child);
  rmSync(state, { recursive: true, force: true });
}
process.exit(exitCode);
