/**
 * The will of a session's connection: stored with the session at CONNECT, discarded by a normal
 * DISCONNECT, published when the connection ends otherwise, after its delay unless the client
 * comes back first [MQTT-3.1.3-9], or when the session ends.
 */
import type { QoS, RoutedMessage } from "../protocol/message";
import { messagePropertiesFrom } from "../protocol/properties";
import type { ConnectPacket } from "../protocol/packets";
import type { SessionContext } from "./session-context";
import type { SessionMeta, StoredWill } from "./store";

/** The will of a CONNECT as SessionMeta.will holds it; undefined when it has none. */
export function willToStore(connect: ConnectPacket): StoredWill | undefined {
  const will = connect.will;
  if (!will) return undefined;
  const v5 = connect.protocolVersion === 5;
  return {
    topic: will.topic,
    payload: new Uint8Array(will.payload),
    qos: (will.qos ?? 0) as QoS,
    retain: will.retain === true,
    properties: v5 ? messagePropertiesFrom(will.properties) : undefined,
    delay: v5 ? Number(will.properties?.willDelayInterval ?? 0) : 0,
  };
}

export class Will {
  constructor(private readonly session: SessionContext) {}

  /**
   * A CONNECT for this client id: the will of a connection that ended without DISCONNECT is sent
   * now unless this reconnect, to the same session, arrives within its delay [MQTT-3.1.3-9].
   */
  async beforeConnect(previous: SessionMeta, cleanStart: boolean, existed: boolean): Promise<void> {
    const pending = previous.will;
    const armed = pending && (previous.connId !== undefined || previous.willAt !== undefined);
    if (pending && armed && (cleanStart || pending.delay === 0 || !existed)) {
      await this.publish(pending).catch(() => undefined);
    }
  }

  /** [MQTT-3.14.4-3] a normal DISCONNECT discards the will. */
  cancel(): void {
    this.session.meta.will = undefined;
  }

  /**
   * The connection ended (meta not written yet): the will waits for its delay or the end of the
   * session, whichever is first [MQTT-3.1.3-9], or goes now.
   */
  async connectionEnded(now: number, expiry: number): Promise<void> {
    const meta = this.session.meta;
    const will = meta.will;
    if (will && will.delay > 0 && expiry > 0) {
      meta.willAt = now + Math.min(will.delay, expiry) * 1000;
    } else if (will) {
      meta.will = undefined;
      await this.publish(will).catch(() => undefined);
    }
  }

  /** The alarm: a delayed will that is due goes now. */
  async alarm(now: number): Promise<void> {
    const meta = this.session.meta;
    if (meta.willAt === undefined || now < meta.willAt || !meta.will) return;
    const will = meta.will;
    meta.will = undefined;
    meta.willAt = undefined;
    this.session.store.writeMeta(meta);
    await this.publish(will).catch(() => undefined);
  }

  /** The session ends: a will still waiting for its delay goes now. */
  async sessionEnds(): Promise<void> {
    const meta = this.session.meta;
    const will = meta.will;
    if (!will) return;
    meta.will = undefined;
    await this.publish(will).catch(() => undefined);
  }

  /** The will as stored, for the admin API (payload size, not the payload). */
  summary(): { topic: string; qos: QoS; retain: boolean; delay: number; bytes: number } | undefined {
    const w = this.session.meta.will;
    return w && { topic: w.topic, qos: w.qos, retain: w.retain, delay: w.delay, bytes: w.payload.length };
  }

  /**
   * Routes the will and runs the operator's rules on it, as on the client's own messages
   * (docs/RULES.md "Where rules run"). The will is gone from the session already: a failure of either
   * is not retried (the callers catch it), so its `queue` actions are at most once.
   */
  private async publish(will: StoredWill): Promise<void> {
    const { io, meta } = this.session;
    const message: RoutedMessage = {
      id: `${meta.clientId}:will:${io.newId()}`,
      origin: meta.clientId ?? "",
      topic: will.topic,
      payload: will.payload,
      qos: will.qos,
      retain: will.retain,
      properties: will.properties,
      receivedAt: io.now(),
    };
    await Promise.all([io.route(message), io.applyRules?.(message)]);
  }
}
