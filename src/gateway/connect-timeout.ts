/**
 * When a connection that has not sent CONNECT is closed (`CONNECT_TIMEOUT_MS`), counting only the time
 * the client is to blame for (pure).
 *
 * The timeout starts when the gateway accepts the upgrade, before its 101 has reached the client. In
 * a connect storm the runtime works through the connections ahead of this one (their upgrades, the
 * sessions being opened for them) before this connection's 101 is out and its CONNECT read. Under
 * `wrangler dev`, of 1,000 clients connecting at once, the last saw their 101 after 4 - 7 s, and the
 * gateway closed up to 937 of them for a CONNECT it had not read yet (docs/PERFORMANCE.md, "At the
 * same moment"). So the timeout starts again while this isolate has other connections that are not
 * open yet (awaiting their CONNECT, authenticating or opening their session), until
 * `BUSY_CONNECT_WAIT_MS` after the upgrade: a silent connection is closed after one timeout in a quiet
 * isolate, and within 60 s (or one timeout, if longer) while others are connecting.
 */

/** How long after its upgrade a connection may wait for its CONNECT while others connect. */
export const BUSY_CONNECT_WAIT_MS = 60_000;

/**
 * The connections of this isolate from their upgrade until they are open or closed: the gateway's
 * own backlog, which the runtime works through before it reads a newer connection's CONNECT. One
 * count per isolate (module state), like the isolate counters.
 */
export class PendingConnections {
  private count = 0;

  /** A connection was accepted. */
  began(): void {
    this.count++;
  }

  /** That connection's session opened, or the connection ended first. */
  ended(): void {
    this.count = Math.max(0, this.count - 1);
  }

  get size(): number {
    return this.count;
  }
}

export const pendingConnections = new PendingConnections();

/** The CONNECT timeout of one connection, accepted at `acceptedAt` (ms). */
export class ConnectTimeout {
  constructor(
    private readonly timeoutMs: number,
    private readonly acceptedAt: number,
    private readonly busyWaitMs = BUSY_CONNECT_WAIT_MS,
  ) {}

  /**
   * The timeout ran out at `now` without a CONNECT: true when it starts again (other connections are
   * pending, and one more timeout ends within the busy wait), false when the connection is closed.
   */
  startsAgain(othersPending: number, now: number): boolean {
    return othersPending > 0 && now - this.acceptedAt + this.timeoutMs <= this.busyWaitMs;
  }
}
