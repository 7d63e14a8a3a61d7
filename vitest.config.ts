// Integration tests inside workerd: the real Worker and Durable Objects, driven through SELF.
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    {
      name: "mqtt-browser-bundle",
      enforce: "pre",
      resolveId: (id: string) =>
        id === "mqtt/dist/mqtt.min.js" ? resolve("node_modules/mqtt/dist/mqtt.min.js") : undefined,
    },
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      // As `npm start`: local development accepts clients without credentials. LOG_LEVEL error: the
      // pool hangs when Durable Objects of a test file that has ended write to the console (seen
      // with queue-gauge after durability's restarts); the operator log is tested end to end
      // (test/e2e/operability.test.ts) and in test/unit/operator-log.test.ts.
      miniflare: { bindings: { ALLOW_ANONYMOUS: "true", ADMIN_TOKEN: "workers-test-admin", LOG_LEVEL: "error" } },
    }),
  ],
  // The pool resolves a bare specifier of a text module (wrangler.toml [[rules]]) from the project
  // root, not node_modules: point it at the file (src/dashboard/mqtt-bundle.ts).
  test: {
    include: ["test/workers/**/*.test.ts", "test/security/**/*.workers.test.ts"],
    testTimeout: 20000,
    // mqtt-packet is CommonJS: the pool cannot load it unbundled, so it is pre-bundled here.
    deps: { optimizer: { ssr: { enabled: true, include: ["mqtt-packet"] } } },
  },
});
