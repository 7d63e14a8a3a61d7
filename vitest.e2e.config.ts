// End-to-end tests: the real Worker under `wrangler dev` (workerd) on a free port, real MQTT clients.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts", "test/security/**/*.e2e.test.ts"],
    environment: "node",
    globalSetup: ["test/e2e/global-setup.ts"],
    testTimeout: 30000,
    hookTimeout: 60000,
    // One broker for the whole run; files run one at a time so timing-sensitive tests are not starved.
    fileParallelism: false,
  },
});
