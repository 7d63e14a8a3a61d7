// A lean MQTT-over-WebSocket client for the load generator: raw `ws` + mqtt-packet, no client library
// in the way, so the generator is not what limits the figures.
import mqtt from "mqtt-packet";
import WebSocket from "ws";

export class BenchClient {
  constructor(url, clientId, { version = 4, keepalive = 300, localAddress } = {}) {
    this.url = url;
    this.clientId = clientId;
    this.version = version;
    this.keepalive = keepalive;
    this.localAddress = localAddress;
    this.parser = mqtt.parser({ protocolVersion: version });
    /** @type {(packet: import("mqtt-packet").IPublishPacket & { payload: Buffer }) => void} */
    this.onPublish = () => {};
    /** Called once the socket has closed, whoever closed it (reconnectStorm's publisher opens another). */
    this.onClose = () => {};
    this.nextId = 1;
    this.pending = new Map();
    this.waiting = [];
    this.parser.on("packet", (p) => this.handle(p));
    // Bytes that are not MQTT end this connection (it then fails as closed), not the whole bench,
    // which would leave the brokers' processes behind.
    this.parser.on("error", (err) => {
      console.log(`  ${clientId}: malformed packet from the broker (${err.message}); closing`);
      this.ws?.terminate();
    });
  }

  /**
   * Resolves with the CONNACK; rejects when the socket fails or closes first. `clean: false` asks for a persistent session (3.1.1: kept until it
   * expires; resumed with Session Present).
   */
  connect({ clean = true } = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, "mqtt", { perMessageDeflate: false, localAddress: this.localAddress });
      this.ws = ws;
      ws.binaryType = "nodebuffer";
      ws.on("message", (data) => this.parser.parse(data));
      ws.on("error", reject);
      ws.on("close", (code) => {
        this.closed = true;
        this.onClose();
        // A broker that closes before CONNACK (its CONNECT timeout, say) must not leave the caller waiting forever.
        reject(new Error(`closed before CONNACK (code ${code})`));
      });
      ws.on("open", () => {
        this.waitFor("connack").then(resolve, reject);
        this.send({
          cmd: "connect",
          protocolVersion: this.version,
          clientId: this.clientId,
          clean,
          keepalive: this.keepalive,
        });
      });
    });
  }

  handle(p) {
    if (p.cmd === "publish") {
      if (p.qos === 1) this.send({ cmd: "puback", messageId: p.messageId });
      this.onPublish(p);
      return;
    }
    if (p.cmd === "puback") {
      const done = this.pending.get(p.messageId);
      this.pending.delete(p.messageId);
      done?.();
      return;
    }
    const i = this.waiting.findIndex((w) => w.cmd === p.cmd);
    if (i >= 0) this.waiting.splice(i, 1)[0].resolve(p);
  }

  waitFor(cmd) {
    return new Promise((resolve) => this.waiting.push({ cmd, resolve }));
  }

  send(packet) {
    this.ws.send(mqtt.generate(packet, { protocolVersion: this.version }));
  }

  async subscribe(topic, qos = 0) {
    const ack = this.waitFor("suback");
    this.send({ cmd: "subscribe", messageId: this.id(), subscriptions: [{ topic, qos }] });
    return ack;
  }

  id() {
    const id = this.nextId;
    this.nextId = (this.nextId % 65535) + 1;
    return id;
  }

  /** QoS 0: returns at once. QoS 1: resolves on PUBACK. */
  publish(topic, payload, qos = 0, retain = false) {
    if (qos === 0) {
      this.send({ cmd: "publish", topic, payload, qos: 0, retain });
      return undefined;
    }
    const messageId = this.id();
    const acked = new Promise((resolve) => this.pending.set(messageId, resolve));
    this.send({ cmd: "publish", topic, payload, qos, retain, messageId });
    return acked;
  }

  /** Bytes queued in the socket but not yet written: the generator waits when this grows. */
  get buffered() {
    return this.ws.bufferedAmount;
  }

  /** The network goes away: no DISCONNECT (as when a deploy drops every connection). */
  drop() {
    this.ws.terminate();
  }

  close() {
    try {
      this.send({ cmd: "disconnect" });
    } catch {
      // the socket is already closed: terminate below is all that is left
    }
    this.ws.terminate();
  }
}
