import { describe, expect, it } from "vitest";
import { GatewayCpuBudget } from "../../src/gateway/cpu-budget";
import { DEFAULT_CONFIG, loadConfig } from "../../src/config";

const costs = { nsPerInboundPacket: 2000, nsPerInboundKib: 8000, nsPerOutboundFrame: 1000, nsPerOutboundKib: 1000 };

describe("the gateway's CPU estimate per connection", () => {
  it("adds each packet and KiB from the client and each frame and KiB to it, and is spent at the budget", () => {
    const budget = new GatewayCpuBudget(1, costs); // 1 ms = 1,000,000 ns
    budget.inbound(100, 102400); // 100 x 2,000 + 100 x 8,000 = 1,000,000 ns
    expect(budget.spentMs).toBe(1);
    expect(budget.spent).toBe(true);
  });

  it("is not spent one frame short of the budget", () => {
    const budget = new GatewayCpuBudget(1, costs);
    for (let i = 0; i < 499; i++) budget.outbound(1024); // 499 x 2,000 ns
    expect(budget.spent).toBe(false);
    budget.outbound(1024);
    expect(budget.spent).toBe(true);
  });

  it("reads GATEWAY_CPU_BUDGET_MS and refuses a budget beyond the platform's 300,000 ms", () => {
    expect(loadConfig({}).gatewayCpuBudgetMs).toBe(DEFAULT_CONFIG.gatewayCpuBudgetMs);
    expect(loadConfig({ GATEWAY_CPU_BUDGET_MS: "1000" }).gatewayCpuBudgetMs).toBe(1000);
    expect(() => loadConfig({ GATEWAY_CPU_BUDGET_MS: "300001" })).toThrow(/GATEWAY_CPU_BUDGET_MS/);
  });
});
