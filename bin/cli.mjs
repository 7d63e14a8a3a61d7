#!/usr/bin/env node
/**
 * mqtt-workers-broker command line. Today one command:
 *
 *   mqtt-workers-broker bridge --listen 1883 --url wss://<host>/mqtt [--host 127.0.0.1]
 *
 * Carries MQTT over plain TCP (mosquitto_pub, Paho C, embedded stacks) to the broker's WebSocket
 * endpoint: one WebSocket per TCP connection, bytes copied both ways unchanged (the broker frames
 * them), either side closing closes the other. Bounded: at most --max-buffer bytes wait for a slow
 * side before the connection is closed.
 */
import { createServer } from "node:net";
import { WebSocket } from "ws";

/** How long a device may take to read the broker's last packets after the broker closed. */
const LINGER_MS = 2000;

const USAGE = `usage: mqtt-workers-broker bridge --url <ws(s)://host/mqtt> [--listen 1883] [--host 0.0.0.0] [--max-buffer 1048576] [--quiet]`;

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const options = { listen: 1883, host: "0.0.0.0", url: undefined, maxBuffer: 1048576, quiet: false };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    const value = () => {
      const v = rest[++i];
      if (v === undefined) fail(`${flag} needs a value`);
      return v;
    };
    if (flag === "--listen" || flag === "-p") options.listen = Number(value());
    else if (flag === "--host") options.host = value();
    else if (flag === "--url") options.url = value();
    else if (flag === "--max-buffer") options.maxBuffer = Number(value());
    else if (flag === "--quiet") options.quiet = true;
    else fail(`unknown option ${flag}`);
  }
  return { command, options };
}

function fail(message) {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

function bridge({ listen, host, url, maxBuffer, quiet }) {
  if (!url || !/^wss?:\/\//.test(url)) fail("--url must be a ws:// or wss:// address of the broker's /mqtt endpoint");
  if (!Number.isInteger(listen) || listen < 0 || listen > 65535) fail("--listen must be a port number");
  const log = (...args) => quiet || console.log(new Date().toISOString(), ...args);
  let open = 0;
  const server = createServer((tcp) => {
    const peer = `${tcp.remoteAddress}:${tcp.remotePort}`;
    open++;
    const ws = new WebSocket(url, "mqtt", { perMessageDeflate: false });
    ws.binaryType = "nodebuffer";
    const early = []; // bytes from the device before the WebSocket is open
    let earlyBytes = 0;
    let closed = false;
    /**
     * When the broker closed, the device gets what the broker sent last (its DISCONNECT and reason)
     * before a FIN, and what it still sends is read and dropped for LINGER_MS: destroy() would discard
     * unflushed bytes, and closing with unread input answers with a RST, on which the device's kernel
     * can drop the DISCONNECT it has not read yet. Otherwise the TCP connection ends at once.
     */
    const close = (why, graceful = false) => {
      if (closed) return;
      closed = true;
      open--;
      log(`closed ${peer} (${why}); ${open} open`);
      if (graceful) {
        tcp.end();
        tcp.resume();
        setTimeout(() => tcp.destroy(), LINGER_MS).unref();
      } else tcp.destroy();
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close();
    };
    tcp.on("data", (chunk) => {
      if (closed) return;
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(chunk);
        // the broker is slower than the device: stop reading until the socket drains
        if (ws.bufferedAmount > maxBuffer) {
          tcp.pause();
          const resume = setInterval(() => {
            if (closed) return clearInterval(resume);
            if (ws.bufferedAmount <= maxBuffer / 2) {
              clearInterval(resume);
              tcp.resume();
            }
          }, 10);
        }
        return;
      }
      earlyBytes += chunk.length;
      if (earlyBytes > maxBuffer) return close("device sent too much before the broker answered");
      early.push(chunk);
    });
    ws.on("open", () => {
      log(`bridged ${peer} -> ${url}; ${open} open`);
      for (const chunk of early.splice(0)) ws.send(chunk);
    });
    ws.on("message", (data) => {
      // the device is slower than the broker: the kernel buffers, then we stop reading the WebSocket
      if (!tcp.write(data)) {
        ws.pause();
        tcp.once("drain", () => ws.resume());
      }
    });
    ws.on("unexpected-response", (_req, res) => close(`broker answered HTTP ${res.statusCode}`));
    ws.on("error", (err) => close(`broker: ${err.message}`));
    ws.on("close", () => close("broker closed", true));
    tcp.on("error", (err) => close(`device: ${err.message}`));
    tcp.on("close", () => close("device closed"));
  });
  server.listen(listen, host, () => {
    const address = server.address();
    // The first line tells scripts (and tests) the port actually bound (--listen 0 picks one).
    console.log(`bridge listening on ${address.address}:${address.port} -> ${url}`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

const { command, options } = parseArgs(process.argv.slice(2));
if (command === "bridge") bridge(options);
else fail(command ? `unknown command ${command}` : "no command");
