/**
 * QoS 0 PUBLISHes dropped for a slow client (outbound-budget.ts decides which): logged at most one
 * line per 10 s, and reported to the client's registry shard for the metrics at most once a second.
 */
import type { BrokerConfig } from "../config";
import { registryStub, type Env } from "../env";
import { SampledLog } from "../observability/log";
import { registryShardFor } from "../registry/client-registry";

/** Slow-consumer drops are reported to the registry at most this often per connection. */
const DROP_REPORT_MS = 1000;

export class SlowConsumerDrops {
  /** Drops not yet reported to the registry. */
  private unreported = 0;
  private reportTimer?: ReturnType<typeof setTimeout>;
  private readonly log = new SampledLog("warn", "client.slow_consumer");

  constructor(
    private readonly clientId: string,
    private readonly env: Env,
    private readonly config: BrokerConfig,
  ) {}

  count(dropped: number): void {
    this.unreported += dropped;
    const limitBytes = this.config.maxClientOutboundBytes;
    this.log.record(Date.now(), { clientId: this.clientId, dropped, limitBytes });
    this.reportTimer ??= setTimeout(() => this.report(), DROP_REPORT_MS);
  }

  /** Reports what is unreported now (the timer's due, or the connection ends); a failure is only logged. */
  report(): void {
    clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
    const count = this.unreported;
    this.unreported = 0;
    if (count === 0) return;
    registryStub(this.env, registryShardFor(this.clientId, this.config.registryShardCount))
      .report({ kind: "dropped", reason: "slow_consumer", count })
      .catch((err) => console.warn("registry report failed", err));
  }
}
