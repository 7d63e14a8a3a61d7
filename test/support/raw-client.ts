/**
 * A raw MQTT client over any WebSocket: sends packet objects (or bytes) and reads parsed packets.
 * For the cases a client library cannot produce (duplicates, missing acks, malformed bytes).
 */
import mqtt from "mqtt-packet";

export interface SocketLike {
  send(data: Uint8Array): void;
  close(): void;
  onBytes(cb: (bytes: Uint8Array) => void): void;
  onClose(cb: () => void): void;
}

type AnyPacket = Record<string, any>;

/** A filter no test subscribes to, for control round trips. */
export const CONTROL_FILTER = "control/never-subscribed";

export class RawClient {
  readonly received: AnyPacket[] = [];
  /** Every byte received, as it came (for what the parsed objects no longer show, e.g. property order). */
  readonly inbound: Uint8Array[] = [];
  /** Acknowledge each QoS 1 PUBLISH as it arrives, as a client library does. */
  autoAck = false;
  closed = false;
  private waiters: (() => void)[] = [];
  private parser: any;
  private version: 3 | 4 | 5;

  constructor(
    private readonly socket: SocketLike,
    version: 3 | 4 | 5 = 5,
  ) {
    this.version = version;
    this.parser = mqtt.parser({ protocolVersion: version });
    this.parser.on("packet", (p: AnyPacket) => {
      this.received.push(p);
      if (this.autoAck && p.cmd === "publish" && p.qos === 1) this.send({ cmd: "puback", messageId: p.messageId });
      this.wake();
    });
    socket.onBytes((bytes) => {
      this.inbound.push(bytes.slice());
      this.parser.parse(Buffer.from(bytes));
    });
    socket.onClose(() => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  send(packet: AnyPacket): void {
    this.socket.send(new Uint8Array(mqtt.generate(packet as mqtt.Packet, { protocolVersion: this.version })));
  }

  sendBytes(bytes: Uint8Array | number[]): void {
    this.socket.send(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  }

  close(): void {
    this.socket.close();
  }

  /** Resolves when `predicate` holds, or rejects after `ms`. */
  async until(predicate: () => boolean, ms = 5000, what = "condition"): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; received ${JSON.stringify(this.received.map((p) => p.cmd))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for the next packet of this kind not yet taken, and takes it. */
  async next(cmd: string, ms = 5000): Promise<AnyPacket> {
    let index = -1;
    await this.until(() => (index = this.received.findIndex((p) => p.cmd === cmd && !p.__taken)) >= 0, ms, cmd);
    const packet = this.received[index];
    packet.__taken = true;
    return packet;
  }

  async waitClosed(ms = 5000): Promise<void> {
    await this.until(() => this.closed, ms, "close");
  }

  /** Packets of a kind received so far. */
  all(cmd: string): AnyPacket[] {
    return this.received.filter((p) => p.cmd === cmd);
  }

  /** CONNECT and wait for CONNACK. */
  async connect(fields: AnyPacket = {}): Promise<AnyPacket> {
    this.send({
      cmd: "connect",
      protocolVersion: this.version,
      protocolId: this.version === 3 ? "MQIsdp" : "MQTT",
      clean: true,
      keepalive: 60,
      clientId: "",
      ...fields,
    });
    return this.next("connack");
  }

  async subscribe(topic: string, qos: 0 | 1 | 2 = 0, messageId = 1, extra: AnyPacket = {}): Promise<AnyPacket> {
    this.send({ cmd: "subscribe", messageId, subscriptions: [{ topic, qos, ...extra }] });
    return this.next("suback");
  }

  /**
   * A control round trip through the Session object: UNSUBSCRIBE a filter never subscribed and wait
   * for the UNSUBACK. The session handles packets in order and sends synchronously, so whatever it
   * sent before has arrived by then. (A PINGRESP proves nothing here: the gateway answers PINGREQ.)
   */
  async roundTrip(messageId = 0xfffe): Promise<void> {
    this.send({ cmd: "unsubscribe", messageId, unsubscriptions: [CONTROL_FILTER] });
    await this.next("unsuback");
  }
}
