/**
 * The Worker's side of the bridges: their states for the admin API, and starting their objects: each isolate, on its first request (and each cron run),
 * asks every bridge in BRIDGES to start. After that each object's alarm keeps it going, also after an
 * eviction; asking again is cheap (one call per bridge per isolate) and covers a deploy, which
 * changes the code of the objects but starts none of them.
 */
import { configFor } from "../config";
import { bridgeStub, type Env } from "../env";
import { logEvent } from "../observability/log";
import { bridgesFor } from "./bridge-config";
import { NO_COUNTS, type BridgeStatus } from "./bridge-client";

const started = new WeakSet<object>();

/** Starts the bridges once per env object (an isolate's); invalid BRIDGES starts none (`/health` says why). */
export function startBridges(env: Env, waitUntil: (promise: Promise<unknown>) => void): void {
  if (started.has(env)) return;
  started.add(env);
  let names: string[];
  try {
    names = bridgesFor(env, configFor(env)).map((b) => b.name);
  } catch {
    return; // reported by config-check.ts
  }
  for (const name of names) {
    waitUntil(
      bridgeStub(env, name)
        .start(name)
        .catch((err: unknown) => logEvent("warn", "bridge.start_failed", { bridge: name, error: String(err) })),
    );
  }
}

/** Each bridge's state (starting any that is not running); one that cannot be reached says why. */
export async function bridgeStatuses(env: Env): Promise<BridgeStatus[]> {
  let names: string[];
  try {
    names = bridgesFor(env, configFor(env)).map((b) => b.name);
  } catch {
    return [];
  }
  return Promise.all(
    names.map((name) =>
      bridgeStub(env, name)
        .start(name)
        .catch((err: unknown): BridgeStatus => ({
          name,
          state: "unreachable",
          lastError: String(err),
          queuedMessages: 0,
          queuedBytes: 0,
          ...NO_COUNTS,
        })),
    ),
  );
}
