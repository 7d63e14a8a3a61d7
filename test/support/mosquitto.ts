/**
 * A real Mosquitto (Debian's /usr/sbin/mosquitto) for the broker-bridge tests: on a free port of
 * 127.0.0.1, anonymous, with persistence in its own directory so that a restart keeps its sessions.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { freePort } from "../e2e/global-setup";
import { sleep } from "./until";

export const MOSQUITTO = "/usr/sbin/mosquitto";

export interface Mosquitto {
  port: number;
  url: string;
  /** Ends it (SIGTERM: it writes its persistence file first) and waits for the exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port and persistence directory. */
  restart(): Promise<void>;
  /** Stops it and deletes its directory. */
  dispose(): Promise<void>;
  log(): string;
}

async function listening(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited: ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: "127.0.0.1", port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`mosquitto did not listen on ${port}: ${log()}`);
}

export async function startMosquitto(): Promise<Mosquitto> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "mosquitto-"));
  const config = join(dir, "mosquitto.conf");
  writeFileSync(
    config,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      // Run as root it would switch to the user `mosquitto`, who may not write the persistence file here.
      `user ${userInfo().username}`,
      "persistence true",
      `persistence_location ${dir}/`,
      "log_dest stdout",
      "log_type error",
      "log_type warning",
      "log_type notice",
      "",
    ].join("\n"),
  );
  let output = "";
  let child: ChildProcess;
  const launch = async () => {
    child = spawn(MOSQUITTO, ["-c", config], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.on("data", (d) => (output += d));
    child.stderr?.on("data", (d) => (output += d));
    await listening(port, child, () => output);
  };
  const stop = async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  };
  await launch();
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    stop,
    restart: launch,
    dispose: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => output,
  };
}
