/**
 * The CPU the gateway has spent on one connection, estimated, against a budget. A stateless Worker
 * that holds a WebSocket runs every packet of the connection, both ways, inside the one invocation
 * that accepted it, and Workers limit CPU per invocation (`limits.cpu_ms`, at most 5 minutes): the
 * platform promises no reset per message to a Worker, as it does to a Durable Object. A busy connection
 * would be cut at the limit, mid-packet, without a word. Ending it ourselves a little before, with a
 * DISCONNECT, lets the client reconnect to a fresh invocation and resume its session.
 *
 * The Worker cannot read its own CPU time (performance.now and Date.now do not advance during
 * synchronous work), so the estimate counts what the connection made the gateway do, at costs
 * measured from CPU profiles (bench/gateway-cpu.mjs, docs/SCALE-gateway.md): per packet and per KiB
 * from the client, per frame and per KiB to it. Pure code: no Cloudflare imports.
 */

/** What one unit of gateway work costs, in nanoseconds of CPU (configuration: GATEWAY_CPU_NS_*). */
export interface GatewayCpuCosts {
  /** Each packet from the client framed and forwarded to the session. */
  nsPerInboundPacket: number;
  /** Each KiB from the client (framing copies it, the frame to the session copies it again). */
  nsPerInboundKib: number;
  /** Each frame from the session sent on to the client. */
  nsPerOutboundFrame: number;
  /** Each KiB from the session sent on to the client. */
  nsPerOutboundKib: number;
}

export class GatewayCpuBudget {
  /** Estimated CPU spent on this connection so far, in nanoseconds. */
  private spentNs = 0;
  private readonly budgetNs: number;

  constructor(
    budgetMs: number,
    private readonly costs: GatewayCpuCosts,
  ) {
    this.budgetNs = budgetMs * 1e6;
  }

  /** Bytes from the client, framed into `packets` packets. */
  inbound(packets: number, bytes: number): void {
    this.spentNs += packets * this.costs.nsPerInboundPacket + (bytes / 1024) * this.costs.nsPerInboundKib;
  }

  /** One frame of `bytes` from the session, sent to the client. */
  outbound(bytes: number): void {
    this.spentNs += this.costs.nsPerOutboundFrame + (bytes / 1024) * this.costs.nsPerOutboundKib;
  }

  /** The estimate has reached the budget: the connection should end before the platform ends it. */
  get spent(): boolean {
    return this.spentNs >= this.budgetNs;
  }

  /** The estimate so far, in whole milliseconds (for the log and the reason string). */
  get spentMs(): number {
    return Math.round(this.spentNs / 1e6);
  }
}
