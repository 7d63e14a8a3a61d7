// Lint rules for the broker. Formatting is Prettier's job (.prettierrc.json); ESLint checks what a
// formatter cannot: promises nobody awaits, unsafe `any`, dead code. The type-aware rules matter here:
// the broker's ordering guarantees rest on which promise is awaited where, inside Durable Objects.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import prettier from "eslint-config-prettier";

export default tseslint.config(
  { ignores: ["**/node_modules/**", "dist/**", "**/.wrangler/**", "bench/results/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["src/**/*.ts", "src/**/*.tsx"],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // A promise left floating in a Durable Object can reorder acknowledgements or lose an error.
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: false }],
      // A `default:` answers the packets a handler does not expect (a protocol error).
      "@typescript-eslint/switch-exhaustiveness-check": ["error", { considerDefaultExhaustiveForUnions: true }],
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/consistent-type-imports": "error",
    },
  },
  {
    files: ["test/**/*.ts", "*.ts"],
    rules: {
      // Tests read untyped packets and JSON bodies from the wire.
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
  {
    files: ["**/*.mjs", "**/*.js", "**/*.cjs"],
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        Buffer: "readonly",
        URL: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly",
        setInterval: "readonly",
        clearInterval: "readonly",
        fetch: "readonly",
        performance: "readonly",
        AbortController: "readonly",
        TextEncoder: "readonly",
        TextDecoder: "readonly",
        module: "readonly",
        require: "readonly",
        __dirname: "readonly",
        setImmediate: "readonly",
        queueMicrotask: "readonly",
      },
    },
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
  {
    // The connect floor's Worker (bench/connect-floor.mjs) runs under workerd, with the Workers globals.
    files: ["bench/floor/**/*.mjs"],
    languageOptions: { globals: { WebSocketPair: "readonly", Response: "readonly", crypto: "readonly" } },
  },
  {
    rules: {
      // Log and string sanitisers match control characters on purpose (src/observability/log-text.ts).
      "no-control-regex": "off",
    },
  },
  {
    // The vitest-pool-workers pattern: `interface ProvidedEnv extends Env {}` declares the test env.
    files: ["test/workers/env.d.ts"],
    rules: { "@typescript-eslint/no-empty-object-type": "off" },
  },
  prettier,
);
