/**
 * A raw MQTT client over any WebSocket: sends packet objects (or bytes) and reads parsed packets.
 * For the cases a client library cannot produce (duplicates, missing acks, malformed bytes).
 */
import mqtt from "mqtt-packet";
import type { IConnectPacket, IPublishPacket, ISubscription, Packet, PacketCmd } from "mqtt-packet";
import { Signal } from "./until";

export interface SocketLike {
  send(data: Uint8Array): void;
  close(): void;
  onBytes(cb: (bytes: Uint8Array) => void): void;
  onClose(cb: () => void): void;
}

/** The packet of one kind, narrowed by its `cmd`. */
export type PacketOf<C extends PacketCmd> = Extract<Packet, { cmd: C }>;

/** A PUBLISH a test sends: `dup` and `retain` may be left out (mqtt-packet writes them as false). */
export type OutgoingPublish = Omit<IPublishPacket, "dup" | "retain"> & Partial<Pick<IPublishPacket, "dup" | "retain">>;

/** A packet a test sends: mqtt-packet's `Packet`, with the PUBLISH fields its generator defaults left out. */
export type OutgoingPacket = Exclude<Packet, IPublishPacket> | OutgoingPublish;

/** A filter no test subscribes to, for control round trips. */
export const CONTROL_FILTER = "control/never-subscribed";

export class RawClient {
  readonly received: Packet[] = [];
  /** Every byte received, as it came (for what the parsed objects no longer show, e.g. property order). */
  readonly inbound: Uint8Array[] = [];
  /** Acknowledge each QoS 1 PUBLISH as it arrives, as a client library does. */
  autoAck = false;
  closed = false;
  private readonly arrivals = new Signal();
  /** Packets `next` has handed out already. */
  private readonly taken = new WeakSet<Packet>();
  private parser: mqtt.Parser;
  private version: 3 | 4 | 5;

  constructor(
    private readonly socket: SocketLike,
    version: 3 | 4 | 5 = 5,
  ) {
    this.version = version;
    this.parser = mqtt.parser({ protocolVersion: version });
    this.parser.on("packet", (p: Packet) => {
      this.received.push(p);
      if (this.autoAck && p.cmd === "publish" && p.qos === 1) this.send({ cmd: "puback", messageId: p.messageId });
      this.arrivals.notify();
    });
    socket.onBytes((bytes) => {
      this.inbound.push(bytes.slice());
      this.parser.parse(Buffer.from(bytes));
    });
    socket.onClose(() => {
      this.closed = true;
      this.arrivals.notify();
    });
  }

  send(packet: OutgoingPacket): void {
    this.socket.send(new Uint8Array(mqtt.generate(packet as Packet, { protocolVersion: this.version })));
  }

  sendBytes(bytes: Uint8Array | number[]): void {
    this.socket.send(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  }

  close(): void {
    this.socket.close();
  }

  /** Resolves when `predicate` holds, or rejects after `ms`. */
  async until(predicate: () => boolean, ms = 5000, what = "condition"): Promise<void> {
    const received = () => JSON.stringify(this.received.map((p) => p.cmd));
    await this.arrivals.until(predicate, ms, () => `timed out waiting for ${what}; received ${received()}`);
  }

  /** Waits for the next packet of this kind not yet taken, and takes it. */
  async next<C extends PacketCmd>(cmd: C, ms = 5000): Promise<PacketOf<C>> {
    let packet: Packet | undefined;
    const found = () => (packet = this.received.find((p) => p.cmd === cmd && !this.taken.has(p))) !== undefined;
    await this.until(found, ms, cmd);
    this.taken.add(packet!);
    return packet as PacketOf<C>;
  }

  async waitClosed(ms = 5000): Promise<void> {
    await this.until(() => this.closed, ms, "close");
  }

  /** Packets of a kind received so far. */
  all<C extends PacketCmd>(cmd: C): PacketOf<C>[] {
    return this.received.filter((p): p is PacketOf<C> => p.cmd === cmd);
  }

  /** Packets of a kind received so far that `next` has not taken. */
  untaken<C extends PacketCmd>(cmd: C): PacketOf<C>[] {
    return this.all(cmd).filter((p) => !this.taken.has(p));
  }

  /** CONNECT and wait for CONNACK. */
  async connect(fields: Partial<IConnectPacket> = {}): Promise<PacketOf<"connack">> {
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

  async subscribe(
    topic: string,
    qos: 0 | 1 | 2 = 0,
    messageId = 1,
    extra: Partial<ISubscription> = {},
  ): Promise<PacketOf<"suback">> {
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
