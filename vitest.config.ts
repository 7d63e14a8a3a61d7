// Integration tests inside workerd: the real Worker and Durable Objects, driven through SELF.
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { resolve } from "node:path";
import { defineConfig, type TestProjectInlineConfiguration } from "vitest/config";

/**
 * One project of this tier: the Worker under test with `vars` over wrangler.toml's. Each project is
 * its own workerd, so a setting a test file must cover both ways runs in both.
 */
function workersProject(name: string, include: string[], vars: Record<string, string>): TestProjectInlineConfiguration {
  return {
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
        miniflare: {
          bindings: { ALLOW_ANONYMOUS: "true", ADMIN_TOKEN: "workers-test-admin", LOG_LEVEL: "error", ...vars },
        },
      }),
    ],
    // The pool resolves a bare specifier of a text module (wrangler.toml [[rules]]) from the project
    // root, not node_modules: point it at the file (src/dashboard/mqtt-bundle.ts).
    test: {
      name,
      include,
      testTimeout: 20000,
      // mqtt-packet is CommonJS: the pool cannot load it unbundled, so it is pre-bundled here.
      deps: { optimizer: { ssr: { enabled: true, include: ["mqtt-packet"] } } },
    },
  };
}

// A shard's answer to the gateway (ROUTE_AT_EDGE=1) is given up after 5 s here, not the default 30 s,
// so that the restart tests see a call chain left pending by reset objects cancelled within a test.
const EDGE_TIMEOUT = { EDGE_ROUTE_TIMEOUT_MS: "5000" };

export default defineConfig({
  test: {
    projects: [
      workersProject("workers", ["test/workers/**/*.test.ts", "test/security/**/*.workers.test.ts"], EDGE_TIMEOUT),
      // The restarts again with routing at the edge (ROUTE_AT_EDGE): who calls the shard changes what
      // a reset cancels (src/topics/shard-publish-request.ts).
      workersProject("workers-route-at-edge", ["test/workers/durability.test.ts"], {
        ...EDGE_TIMEOUT,
        ROUTE_AT_EDGE: "1",
      }),
    ],
  },
});
