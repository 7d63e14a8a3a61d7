// Integration tests inside workerd: the real Worker and Durable Objects, driven through SELF.
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      // As `npm start`: local development accepts clients without credentials.
      miniflare: { bindings: { ALLOW_ANONYMOUS: "true", ADMIN_TOKEN: "workers-test-admin" } },
    }),
  ],
  test: {
    include: ["test/workers/**/*.test.ts", "test/security/**/*.workers.test.ts"],
    testTimeout: 20000,
    // mqtt-packet is CommonJS; the pool needs it pre-bundled (see shared TOOLCHAIN.md).
    deps: { optimizer: { ssr: { enabled: true, include: ["mqtt-packet"] } } },
  },
});
