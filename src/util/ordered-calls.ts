/**
 * Calls between Durable Objects, handled in the order they were made.
 *
 * Why: Cloudflare documents E-order for calls on one stub, but under workerd (locally, with the CPU
 * busy) two `publishMany` calls from a Session object to a TopicShard were handled in the reverse of
 * the order they were made, and so were deliveries to a subscriber: a client's messages reached
 * another client out of order, which MQTT forbids for an Ordered Topic [MQTT-4.6.0-5] [MQTT-4.6.0-6].
 * (The same runtime reordered hibernatable WebSocket messages: protocol/internal-order.ts.) So the
 * order is carried explicitly: the caller numbers its calls per destination, the callee runs each
 * caller's calls in that order.
 *
 * A call's "run" is its synchronous part (what it does before its first await: a shard adding a
 * message's deliveries to its per-session batches, sending a packet to a client); what it awaits
 * afterwards may overlap.
 */
import { InboundOrder } from "../protocol/internal-order";

/** How long a call that arrived early waits for an earlier one that may have been lost. */
export const CALL_GAP_MS = 1000;

/** Where a call stands in its caller's sequence. */
export interface CallOrder {
  /** The caller's sequence: one per caller instance and destination, new after a failure. */
  from: string;
  /** This call's number in it, from 0. */
  seq: number;
  /** Every number below this one is settled at the caller (answered or failed): none is waited for. */
  after: number;
}

interface Channel<S> {
  stub: S;
  from: string;
  next: number;
  /** Numbers of calls not settled yet, in increasing order (a Set keeps insertion order). */
  inFlight: Set<number>;
}

/**
 * The caller's side: one stub per destination (made on first use), every call numbered. A call that
 * fails drops its channel: the stub may be broken (a broken stub fails every later call), so the
 * next call makes a new stub and starts a new sequence.
 */
export class OrderedChannels<K, S> {
  private readonly channels = new Map<K, Channel<S>>();

  constructor(
    private readonly open: (key: K) => S,
    private readonly newId: () => string,
    /** Destinations kept; beyond this the least recently used one is forgotten (a new sequence next time). */
    private readonly maxChannels: number,
  ) {}

  /** Makes one numbered call; `invoke` passes `order` to the callee's sequencer. */
  call<R>(key: K, invoke: (stub: S, order: CallOrder) => Promise<R>): Promise<R> {
    const channel = this.channel(key);
    const seq = channel.next++;
    channel.inFlight.add(seq);
    const order: CallOrder = { from: channel.from, seq, after: channel.inFlight.values().next().value! };
    let result: Promise<R>;
    try {
      result = invoke(channel.stub, order);
    } catch (err) {
      result = Promise.reject(err);
    }
    return result.then(
      (value) => {
        channel.inFlight.delete(seq);
        return value;
      },
      (err: unknown) => {
        channel.inFlight.delete(seq);
        if (this.channels.get(key) === channel) this.channels.delete(key);
        throw err;
      },
    );
  }

  private channel(key: K): Channel<S> {
    let channel = this.channels.get(key);
    if (channel) {
      this.channels.delete(key); // most recently used goes last
      this.channels.set(key, channel);
      return channel;
    }
    if (this.channels.size >= this.maxChannels) this.channels.delete(this.channels.keys().next().value!);
    channel = { stub: this.open(key), from: this.newId(), next: 0, inFlight: new Set() };
    this.channels.set(key, channel);
    return channel;
  }
}

interface Caller {
  order: InboundOrder<() => void>;
  /** The expected number when the gap timer was set: no progress since then releases the held calls. */
  stalledAt?: number;
}

/**
 * The callee's side: runs each caller's calls in their order. A call that arrives early waits for
 * the earlier ones, at most `gapMs` without progress (a call lost on the way is then not waited for)
 * and at most MAX_HELD_FRAMES calls per caller; calls without an order run at once.
 */
export class CallSequencer {
  private readonly callers = new Map<string, Caller>();

  constructor(
    /** Callers remembered; beyond this the least recently heard is forgotten (its held calls run). */
    private readonly maxCallers: number,
    private readonly gapMs: number,
    private readonly later: (ms: number, fn: () => void) => void,
  ) {}

  /** Runs `call` in its caller's order; resolves with what it returns. */
  run<R>(order: CallOrder | undefined, call: () => R | Promise<R>): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const runCall = () => {
        try {
          resolve(call());
        } catch (err) {
          reject(err);
        }
      };
      if (!order) return runCall();
      const caller = this.caller(order);
      for (const ready of caller.order.accept(order.seq, runCall, order.after)) ready();
      if (caller.order.holding && caller.stalledAt === undefined) this.watchGap(caller);
    });
  }

  private caller(order: CallOrder): Caller {
    let caller = this.callers.get(order.from);
    if (caller) {
      this.callers.delete(order.from); // most recently heard goes last
      this.callers.set(order.from, caller);
      return caller;
    }
    if (this.callers.size >= this.maxCallers) {
      const [oldest, forgotten] = this.callers.entries().next().value!;
      this.callers.delete(oldest);
      for (const ready of forgotten.order.releaseAll()) ready();
    }
    // A caller not heard before (or forgotten): nothing below `after` is waited for.
    caller = { order: new InboundOrder<() => void>(order.after) };
    this.callers.set(order.from, caller);
    return caller;
  }

  private watchGap(caller: Caller): void {
    caller.stalledAt = caller.order.expected;
    this.later(this.gapMs, () => {
      const stalled = caller.order.expected === caller.stalledAt;
      caller.stalledAt = undefined;
      if (stalled) for (const ready of caller.order.releaseAll()) ready();
      if (caller.order.holding) this.watchGap(caller);
    });
  }
}
