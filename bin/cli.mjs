#!/usr/bin/env node
/**
 * mqtt-workers-broker command line. Today one command, `bridge` (see HELP below): it carries MQTT
 * over TCP or TLS (mosquitto_pub, Paho C, embedded stacks) to the broker's WebSocket endpoint, one
 * WebSocket per device connection, bytes copied both ways unchanged (the broker frames them).
 *
 * Mistakes on the command line exit with 2, a listener that cannot start with 1, each with one
 * readable line on stderr and no stack trace.
 */
import { readFileSync } from "node:fs";
import { createServer as createTcpServer } from "node:net";
import { pipeline } from "node:stream";
import { createServer as createTlsServer } from "node:tls";
import { parseArgs } from "node:util";
import { WebSocket, createWebSocketStream } from "ws";

/** How long a device may take to read the broker's last packets after the broker closed. */
const LINGER_MS = 2000;
/** How long SIGINT/SIGTERM waits for devices and the broker to finish closing before exiting anyway. */
const SHUTDOWN_MS = 3000;

const HELP = `usage: mqtt-workers-broker bridge --url <ws(s)://host/mqtt> [options]

Carries MQTT over TCP or TLS (mosquitto_pub, Paho, embedded stacks) to the broker's WebSocket
endpoint: one WebSocket per device connection, bytes passed unchanged both ways.

options:
  --url <url>            the broker's endpoint: ws://host:port/mqtt or wss://host/mqtt (required)
  -p, --listen <port>    port devices connect to (default 1883, 8883 with TLS; 0 picks a free one)
  --host <address>       interface to listen on (default 127.0.0.1: this machine only;
                         0.0.0.0 on a gateway that devices on the network reach)
  --tls-cert <file>      PEM certificate (chain): devices connect with TLS (MQTTS), not plain TCP
  --tls-key <file>       PEM private key of --tls-cert
  --max-buffer <bytes>   bytes that may wait for a slow side before the bridge stops reading
                         the other side (default 1048576)
  --quiet                log only the listening line and errors, not each connection
  -h, --help             print this help
  --version              print the version

SIGINT or SIGTERM stops accepting, ends each device's connection (FIN) and closes its
WebSocket, and exits with 0 within ${SHUTDOWN_MS / 1000} s, even if a device does not close its side.`;

const OPTIONS = {
  url: { type: "string" },
  listen: { type: "string", short: "p" },
  host: { type: "string", default: "127.0.0.1" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "max-buffer": { type: "string", default: "1048576" },
  quiet: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", default: false },
};

/** A mistake on the command line: one line naming it, a pointer to --help, exit 2. */
function usageError(message) {
  console.error(`mqtt-workers-broker: ${message}\nRun 'mqtt-workers-broker --help' for usage.`);
  process.exit(2);
}

/** Something the bridge cannot do as asked (the port is taken): one line, exit 1. */
function fatal(message) {
  console.error(`mqtt-workers-broker: ${message}`);
  process.exit(1);
}

function version() {
  return JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;
}

function main(argv) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs adds advice about "--" that does not help here
    usageError(err.message.replace(/\. To specify a positional argument.*$/s, ""));
  }
  const { values, positionals } = parsed;
  if (values.help) return void console.log(HELP);
  if (values.version) return void console.log(version());
  const [command, ...extra] = positionals;
  if (command !== "bridge")
    usageError(command ? `unknown command ${JSON.stringify(command)}` : "no command given (bridge)");
  if (extra.length) usageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  bridge(bridgeOptions(values));
}

function bridgeOptions(values) {
  const tls =
    values["tls-cert"] !== undefined || values["tls-key"] !== undefined
      ? readTls(values["tls-cert"], values["tls-key"])
      : undefined;
  return {
    url: brokerUrl(values.url),
    tls,
    listen: integer("--listen", values.listen ?? (tls ? "8883" : "1883"), 0, 65535),
    host: values.host,
    maxBuffer: integer("--max-buffer", values["max-buffer"], 1, 2 ** 31 - 1),
    quiet: values.quiet,
  };
}

function brokerUrl(text) {
  const expected = "the broker's endpoint as ws://host:port/mqtt or wss://host/mqtt";
  if (text === undefined) usageError(`--url is required: ${expected}`);
  if (!URL.canParse(text)) usageError(`--url ${JSON.stringify(text)} is not a URL; expected ${expected}`);
  const url = new URL(text);
  if (url.protocol !== "ws:" && url.protocol !== "wss:")
    usageError(`--url ${JSON.stringify(text)} must start with ws:// or wss://: ${expected}`);
  return url.href;
}

function integer(flag, text, min, max) {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max)
    usageError(`${flag} must be a whole number from ${min} to ${max}, not ${JSON.stringify(text)}`);
  return n;
}

function readTls(certPath, keyPath) {
  if (certPath === undefined || keyPath === undefined)
    usageError("TLS needs both --tls-cert and --tls-key (PEM files)");
  const read = (flag, path) => {
    try {
      return readFileSync(path);
    } catch (err) {
      usageError(
        `cannot read ${flag} ${JSON.stringify(path)}: ${err.code === "ENOENT" ? "no such file" : err.message}`,
      );
    }
  };
  return { cert: read("--tls-cert", certPath), key: read("--tls-key", keyPath) };
}

function listenError(err, host, port) {
  const why = {
    EADDRINUSE: "the port is already in use (another bridge or broker?); choose another with --listen",
    EACCES: "permission denied (ports below 1024 need privileges); choose another with --listen",
    EADDRNOTAVAIL: "no interface of this machine has that address (--host)",
  }[err.code];
  return `cannot listen on ${host}:${port}: ${why ?? err.message}`;
}

/**
 * The broker side of one device. Once the broker has begun closing, what the device still sends is
 * read and dropped instead of failing the stream: a failed write would make the pipeline destroy
 * the device's connection (a reset) before it has read the broker's last packets, its DISCONNECT
 * and reason code.
 */
class BrokerSocket extends WebSocket {
  send(data, options, cb) {
    if (this.readyState === WebSocket.CLOSING || this.readyState === WebSocket.CLOSED) {
      return void (typeof options === "function" ? options : cb)?.();
    }
    super.send(data, options, cb);
  }

  /**
   * The stream calls this when the device's side failed or was reset; the broker still gets a close
   * handshake, as from any client that leaves, rather than a TCP connection cut mid-stream.
   */
  terminate() {
    if (this.readyState === WebSocket.OPEN) this.close(1001);
    else super.terminate();
  }
}

/**
 * Relays one device connection. Backpressure is the streams': a side that reads slowly fills at
 * most --max-buffer bytes, then the bridge stops reading the other side (the kernel's TCP window
 * then holds back the sender). Bytes a device sends before the broker has answered wait in the same
 * buffer. Returns `stop`, which ends the device's connection (FIN) and closes the WebSocket.
 */
function relay(device, { url, maxBuffer }, log, onClosed) {
  const peer = `${device.remoteAddress}:${device.remotePort}`;
  const ws = new BrokerSocket(url, "mqtt", { perMessageDeflate: false });
  const broker = createWebSocketStream(ws, { readableHighWaterMark: maxBuffer, writableHighWaterMark: maxBuffer });
  let why;
  const because = (reason) => (why ??= reason);
  // Errors are reported through the events below; pipeline destroys both sides on any of them.
  pipeline(device, broker, () => undefined);
  // When the broker closes, this ends the device's connection (FIN) after the broker's last bytes.
  pipeline(broker, device, () => undefined);
  ws.on("open", () => log(`bridged ${peer} -> ${url}`));
  ws.on("error", (err) => because(`broker: ${err.message}`));
  ws.on("close", (code) => {
    because(`broker closed (${code})`);
    // a device that neither reads on nor closes its side is not kept for ever
    setTimeout(() => device.destroy(), LINGER_MS).unref();
  });
  device.on("error", (err) => because(`device: ${err.message}`));
  device.on("end", () => because("device closed"));
  device.on("close", () => onClosed(peer, why ?? "closed"));
  return () => {
    because("bridge stopping");
    device.end();
    ws.close(1001);
  };
}

function bridge(options) {
  const { url, tls, listen, host, quiet } = options;
  const log = (...args) => quiet || console.log(new Date().toISOString(), ...args);
  const open = new Set();
  const accept = (device) => {
    const stop = relay(device, options, log, (peer, why) => {
      open.delete(stop);
      log(`closed ${peer} (${why}); ${open.size} open`);
    });
    open.add(stop);
  };
  let server;
  try {
    server = tls ? createTlsServer(tls, accept) : createTcpServer(accept);
  } catch (err) {
    usageError(`--tls-cert and --tls-key are not a usable PEM certificate and key: ${err.message}`);
  }
  server.on("tlsClientError", (err, socket) =>
    log(`TLS handshake with ${socket.remoteAddress} failed: ${err.message}`),
  );
  server.on("error", (err) =>
    server.listening ? log(`listener: ${err.message}`) : fatal(listenError(err, host, listen)),
  );
  server.listen(listen, host, () => {
    const { address, port } = server.address();
    const where = address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
    // The first line tells scripts (and tests) the port actually bound (--listen 0 picks one).
    console.log(`bridge listening on ${where}${tls ? " (TLS)" : ""} -> ${url}`);
  });
  const shutdown = (signal) => {
    log(`${signal}: stopping, closing ${open.size} connections`);
    server.close();
    for (const stop of open) stop();
    // Exits by itself once every socket is closed; this bounds the wait for peers that do not close.
    setTimeout(() => process.exit(0), SHUTDOWN_MS).unref();
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

main(process.argv.slice(2));
