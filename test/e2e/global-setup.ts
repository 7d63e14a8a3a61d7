/**
 * Starts the real Worker under `wrangler dev` (workerd) on a free port with a fresh local state
 * directory, exactly as `npm start` does, and stops it after the run.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { exportJWK, generateKeyPair } from "jose";
import { hashPassword } from "../../src/auth/password";

/** Credentials the e2e broker knows (test/e2e/auth.test.ts). */
export const E2E_USERS = { alice: "alice-password", bob: "bob-password" };
export const E2E_ADMIN_TOKEN = "e2e-admin-token";
export const E2E_API_TOKEN = "e2e-api-token";
export const E2E_JWT_SECRET = "e2e-jwt-secret-of-enough-length-for-hs256";

/** ACL of the e2e broker: alice is confined to users/alice/#, role readonly may not publish. */
const E2E_ACL = [
  { allow: true, action: "all", users: ["alice"], topics: ["users/%u/#"] },
  { allow: false, action: "all", users: ["alice"], topics: ["#"] },
  { allow: false, action: "publish", roles: ["readonly"], topics: ["#"] },
];

/** Smaller limits than the defaults so that tests can reach them quickly. */
export const E2E_VARS: Record<string, string> = {
  CONNECT_TIMEOUT_MS: "1500",
  MAX_QUEUED_MESSAGES: "300",
  MAX_QUEUED_BYTES: "262144",
  MAX_SUBSCRIPTIONS: "20",
  MAX_PACKET_SIZE: "16384",
  MAX_PUBLISH_RATE: "500",
  ALLOW_ANONYMOUS: "true",
  JWT_SECRET: E2E_JWT_SECRET,
  ACL: JSON.stringify(E2E_ACL),
  ACL_DEFAULT: "allow",
  AUTH_HOOK_TIMEOUT_MS: "1000",
  ADMIN_TOKEN: E2E_ADMIN_TOKEN,
  API_TOKEN: E2E_API_TOKEN,
  API_USERNAME: "backend",
  SYS_INTERVAL_SECONDS: "2",
};

/**
 * The user's authentication endpoint, as the HTTP hook calls it: hook-user/hook-pass is allowed
 * (publish only to hook/#), "slow" never answers in time, everyone else is refused.
 */
async function startAuthHook(jwks: object): Promise<{ url: string; close: () => void }> {
  const server = createHttpServer((req, res) => {
    if (req.url === "/jwks") {
      res.setHeader("content-type", "application/json");
      return void res.end(JSON.stringify(jwks));
    }
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      const { username, password } = JSON.parse(body || "{}");
      if (username === "slow") return void setTimeout(() => res.end("{}"), 3000);
      res.setHeader("content-type", "application/json");
      if (username === "hook-user" && password === "hook-pass") {
        return void res.end(
          JSON.stringify({ allow: true, roles: ["hooked"], publish: ["hook/#"], subscribe: ["hook/#"] }),
        );
      }
      res.end(JSON.stringify({ allow: false }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/auth`, close: () => server.close() };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitForHealth(url: string, child: ChildProcess, log: () => string, healthy = true): Promise<void> {
  const deadline = Date.now() + 45000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${log()}`);
    try {
      const res = await fetch(`${url}/health`);
      if (res.ok || (!healthy && res.status === 503)) return; // 503: up, but misconfigured
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`wrangler dev did not become healthy:\n${log()}`);
}

/** Ends a detached child's whole process group (wrangler and its workerd): SIGTERM, then SIGKILL. */
export async function stopProcessGroup(pid: number, first: NodeJS.Signals = "SIGTERM"): Promise<void> {
  for (const signal of [first, "SIGKILL"] as const) {
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

/**
 * Starts `wrangler dev` (as `npm start` does) on a free port with its own state; resolves when
 * healthy (or, with `healthy` false, when /health answers at all: a misconfigured broker's 503).
 * `restart` starts it on another's state directory and port, as a deploy restarts the objects on
 * their storage (the other must be stopped with `keepState`; this one then owns the directory).
 */
export async function startBroker(
  vars: Record<string, string>,
  /** Several: one `wrangler dev` runs them all, the first on the port (test/e2e/rules.test.ts adds a Queue consumer). */
  configPath?: string | string[],
  healthy = true,
  restart?: { state: string; port: number },
): Promise<{
  base: string;
  pid: number;
  state: string;
  port: number;
  output: () => string;
  stop: (keepState?: boolean) => Promise<void>;
}> {
  const port = restart?.port ?? (await freePort());
  // Its own inspector port too: two brokers at once (a test file's beside the global one) must not clash on 9229.
  const inspectorPort = await freePort();
  const state = restart?.state ?? mkdtempSync(join(tmpdir(), "mqtt-e2e-"));
  const args = Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const child = spawn(
    "npx",
    [
      "wrangler",
      "dev",
      ...[configPath ?? []].flat().flatMap((path) => ["-c", path]),
      "--port",
      String(port),
      "--inspector-port",
      String(inspectorPort),
      "--ip",
      "127.0.0.1",
      "--persist-to",
      state,
      ...args,
    ],
    { detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
  );
  let output = "";
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const base = `http://127.0.0.1:${port}`;
  await waitForHealth(base, child, () => output, healthy);
  const stop = async (keepState = false) => {
    await stopProcessGroup(child.pid!);
    if (!keepState) rmSync(state, { recursive: true, force: true });
  };
  return { base, pid: child.pid!, state, port, output: () => output, stop };
}

export default async function setup(project: TestProject) {
  // An ES256 key pair: the public half is served as the JWKS, tests sign with the private half.
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid: "e2e", alg: "ES256", use: "sig" };
  const hook = await startAuthHook({ keys: [publicJwk] });
  const users: Record<string, unknown> = {};
  for (const [name, password] of Object.entries(E2E_USERS)) {
    users[name] = { hash: await hashPassword(password, 1000), roles: name === "bob" ? ["readonly"] : [] };
  }
  const broker = await startBroker({
    ...E2E_VARS,
    AUTH_USERS: JSON.stringify(users),
    AUTH_HOOK_URL: hook.url,
    JWT_JWKS_URL: hook.url.replace("/auth", "/jwks"),
  });
  project.provide("jwtPrivateJwk", JSON.stringify(await exportJWK(privateKey)));
  project.provide("brokerHttp", broker.base);
  project.provide("brokerUrl", `${broker.base.replace("http", "ws")}/mqtt`);
  return async () => {
    hook.close();
    if (process.env.E2E_BROKER_LOG) console.log(broker.output());
    await broker.stop();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    brokerUrl: string;
    brokerHttp: string;
    jwtPrivateJwk: string;
  }
}
