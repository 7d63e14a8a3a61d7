#!/usr/bin/env node
/**
 * `npm start [-- wrangler dev flags]`: the broker under `wrangler dev` for local development
 * (anonymous clients allowed, admin token `dev-admin`), plus what wrangler does not say:
 * - one banner line once it is ready: where MQTT, the dashboard and the health check are;
 * - the configuration problems `/health` reports, if any, in red;
 * - workerd's own "Uncaught Error: Network connection lost." for a client that drops without
 *   DISCONNECT is left out: it is an expected event, which the broker logs itself as
 *   `connection.ended` with the reason `network: ...`.
 * Every other line, the broker's JSON log lines included, is passed through as wrangler wrote it.
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const DEV_VARS = ["--var", "ALLOW_ANONYMOUS:true", "--var", "ADMIN_TOKEN:dev-admin"];
const args = ["dev", ...DEV_VARS, ...process.argv.slice(2)];
const wrangler = createRequire(import.meta.url).resolve("wrangler/bin/wrangler.js");
const child = spawn(process.execPath, [wrangler, ...args], {
  stdio: ["inherit", "pipe", "pipe"],
  env: { ...process.env, FORCE_COLOR: process.stdout.isTTY ? "1" : (process.env.FORCE_COLOR ?? "0") },
});

/** The last `--var ADMIN_TOKEN:...` given (the user's own wins over ours). */
function adminToken() {
  let token;
  for (let i = 0; i < args.length - 1; i++) {
    if (args[i] === "--var" && args[i + 1].startsWith("ADMIN_TOKEN:")) token = args[i + 1].slice("ADMIN_TOKEN:".length);
  }
  return token;
}

const plain = (line) => line.replace(/\u001b\[[0-9;]*m/g, "");
const NETWORK_LOST = /Uncaught Error: Network connection lost\.\s*$/;
let announced = false;

async function announce(base) {
  announced = true;
  const { host } = new URL(base);
  const token = adminToken();
  console.log(
    `MQTT ws://${host}/mqtt · dashboard ${base}/dashboard${token ? ` (admin token: ${token})` : ""} · health /health`,
  );
  try {
    const response = await fetch(`${base}/health`);
    if (response.status === 503) {
      const { problems } = await response.json();
      for (const { variable, problem } of problems)
        console.error(`\u001b[31mconfiguration: ${variable}: ${problem}\u001b[0m`);
      console.error("\u001b[31m/health answers 503 and MQTT connections are refused until this is fixed.\u001b[0m");
    }
  } catch (err) {
    console.error(`could not read ${base}/health: ${err.message}`);
  }
}

function pass(stream, out) {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let skipBlank = 0;
  lines.on("line", (line) => {
    const text = plain(line);
    if (NETWORK_LOST.test(text)) {
      skipBlank = 2; // workerd follows it with blank lines
      return;
    }
    if (skipBlank > 0 && text.trim() === "") {
      skipBlank--;
      return;
    }
    skipBlank = 0;
    out.write(`${line}\n`);
    const ready = /Ready on (https?:\/\/[^\s]+)/.exec(text);
    if (ready && !announced) void announce(ready[1].replace(/\/$/, ""));
  });
}

pass(child.stdout, process.stdout);
pass(child.stderr, process.stderr);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
