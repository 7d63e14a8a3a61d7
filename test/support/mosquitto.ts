/**
 * A real Mosquitto (Debian's /usr/sbin/mosquitto) for the broker-bridge tests: on a free port of
 * 127.0.0.1, anonymous, with persistence in its own directory so that a restart keeps its sessions.
 * With `tls`, the listener is TLS only (mqtts://localhost:<port>), with a certificate made by `testCa`.
 */
import { execFileSync } from "node:child_process";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { freePort } from "../e2e/global-setup";
import { sleep } from "./until";

export const MOSQUITTO = "/usr/sbin/mosquitto";

/** PEM files of a certificate authority made for one test run, and of a server certificate it signed. */
export interface TestCa {
  /** The CA's certificate. */
  caFile: string;
  /** The system's trusted CAs plus this one: what SSL_CERT_FILE points workerd at to trust it. */
  bundleFile: string;
  certFile: string;
  keyFile: string;
}

/** A throwaway CA (openssl) and a server certificate for localhost and 127.0.0.1, valid for a day. */
export function testCa(dir: string): TestCa {
  const at = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=bridge test CA",
    "-keyout",
    at("ca.key"),
    "-out",
    at("ca.crt"),
  );
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    at("server.key"),
    "-out",
    at("server.csr"),
  );
  writeFileSync(at("san.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  openssl(
    "x509",
    "-req",
    "-days",
    "1",
    "-in",
    at("server.csr"),
    "-CA",
    at("ca.crt"),
    "-CAkey",
    at("ca.key"),
    "-CAcreateserial",
    "-extfile",
    at("san.cnf"),
    "-out",
    at("server.crt"),
  );
  const system = "/etc/ssl/certs/ca-certificates.crt";
  writeFileSync(
    at("bundle.crt"),
    (existsSync(system) ? readFileSync(system, "utf8") : "") + readFileSync(at("ca.crt")),
  );
  return { caFile: at("ca.crt"), bundleFile: at("bundle.crt"), certFile: at("server.crt"), keyFile: at("server.key") };
}

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

export async function startMosquitto(tls?: TestCa): Promise<Mosquitto> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "mosquitto-"));
  const config = join(dir, "mosquitto.conf");
  writeFileSync(
    config,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      ...(tls ? [`cafile ${tls.caFile}`, `certfile ${tls.certFile}`, `keyfile ${tls.keyFile}`] : []),
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
    url: tls ? `mqtts://localhost:${port}` : `mqtt://127.0.0.1:${port}`,
    stop,
    restart: launch,
    dispose: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => output,
  };
}
