// Unit tests of the pure core, in plain Node.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts", "test/security/**/*.unit.test.ts"],
    environment: "node",
  },
});
