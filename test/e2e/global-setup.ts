/**
 * Starts the real Worker under `wrangler dev` (workerd) on a free port with a fresh local state
 * directory, exactly as `npm start` does, and stops it after the run.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";

/** Smaller limits than the defaults so that tests can reach them quickly. */
export const E2E_VARS: Record<string, string> = {
  CONNECT_TIMEOUT_MS: "1500",
  MAX_QUEUED_MESSAGES: "300",
  MAX_SUBSCRIPTIONS: "20",
  MAX_PACKET_SIZE: "16384",
};

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitForHealth(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 45000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${log()}`);
    try {
      const res = await fetch(`${url}/health`);
      if (res.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`wrangler dev did not become healthy:\n${log()}`);
}

export default async function setup(project: TestProject) {
  const port = await freePort();
  const state = mkdtempSync(join(tmpdir(), "mqtt-e2e-"));
  const vars = Object.entries(E2E_VARS).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const child = spawn(
    "npx",
    ["wrangler", "dev", "--port", String(port), "--ip", "127.0.0.1", "--persist-to", state, ...vars],
    { detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
  );
  let output = "";
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const base = `http://127.0.0.1:${port}`;
  await waitForHealth(base, child, () => output);
  project.provide("brokerHttp", base);
  project.provide("brokerUrl", `ws://127.0.0.1:${port}/mqtt`);
  return async () => {
    try {
      process.kill(-child.pid!, "SIGTERM");
    } catch {
      // already gone
    }
    await new Promise((r) => setTimeout(r, 500));
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
    if (process.env.E2E_BROKER_LOG) console.log(output);
    rmSync(state, { recursive: true, force: true });
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    brokerUrl: string;
    brokerHttp: string;
  }
}
