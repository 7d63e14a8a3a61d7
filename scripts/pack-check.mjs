#!/usr/bin/env node
/**
 * The package as users get it: `npm pack`s this repository, checks the tarball's file list, installs
 * the tarball into a fresh Worker project in a temporary folder (a copy of examples/queue-forwarder,
 * its dependency pointed at the tarball), and runs test/e2e/hooks-example.test.ts against that
 * project under `wrangler dev`. The project sits outside this repository, so its bundle can only use
 * what the tarball and its declared dependencies provide: a file missing from `files`, a wrong
 * `exports` entry or a dependency listed as a devDependency fails here.
 *
 * The project's wrangler is not installed: this repository's pinned one bundles and runs it. Its
 * TypeScript, with the tsconfig the README asks for, type-checks it (and so the broker's source).
 * Exits non-zero on the first failure, keeping the temporary folder for a look.
 *
 *   node scripts/pack-check.mjs     (npm run test:pack; .ci/run runs it after npm test)
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, appendFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const example = join(root, "examples/queue-forwarder");
const started = Date.now();

/** What a Worker that imports the broker, or a user of the bridge CLI, needs from the tarball. */
const REQUIRED = [
  "package.json",
  "LICENSE",
  "README.md",
  "src/library.ts",
  "src/index.ts",
  "src/util/silent-debug.cjs",
  "bin/cli.mjs",
  "wrangler.toml",
];
/** What only this repository's development needs. */
const FORBIDDEN = ["test/", "node_modules/", "docs/", "bench/", "scripts/", "examples/", ".ci/", ".wrangler/", "dist/"];

/**
 * A TypeScript project type-checks the broker's source too (the package ships .ts): the settings
 * README.md ("Install it in your own Worker") asks for. Written here, not in the example folder,
 * where it would hide the root tsconfig's mapping of the package name to src/ from wrangler's esbuild.
 */
const CONSUMER_TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "ES2022",
    moduleResolution: "Bundler",
    lib: ["ES2022"],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ["@cloudflare/workers-types", "node"],
    jsx: "react-jsx",
    jsxImportSource: "hono/jsx",
  },
  include: ["*.ts"],
};

/** Runs a command to its end and returns its stdout; on failure, says what failed (its stderr is shown) and exits. */
function run(cmd, args, cwd, failure, { env = {}, stdio = "pipe" } = {}) {
  try {
    return execFileSync(cmd, args, {
      cwd,
      stdio: ["ignore", stdio, "inherit"],
      env: { ...process.env, ...env },
      encoding: "utf8",
    });
  } catch (err) {
    fail(`${failure} (${err.code ?? `exit ${err.status}`})`);
  }
}
const step = (what) => console.log(`pack-check: ${what} (${((Date.now() - started) / 1000).toFixed(1)} s)`);

function fail(message) {
  console.error(`pack-check: FAILED: ${message}\n  (kept ${work})`);
  process.exit(1);
}

/** Problems with the packed file list: required files missing, development files shipped. */
function fileListProblems(paths) {
  const missing = REQUIRED.filter((p) => !paths.includes(p));
  const shipped = paths.filter((p) => FORBIDDEN.some((prefix) => p.startsWith(prefix)));
  return [...missing.map((p) => `missing ${p}`), ...shipped.map((p) => `ships ${p}`)];
}

const work = mkdtempSync(join(tmpdir(), "mqtt-pack-check-"));

step("npm pack");
const [packed] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", work], root, "npm pack"));
const tarball = join(work, packed.filename);
const problems = fileListProblems(packed.files.map((f) => f.path));
if (problems.length > 0) fail(`the tarball's file list: ${problems.join(", ")}`);
step(
  `${packed.filename}: ${packed.entryCount} files, ${(packed.size / 1024).toFixed(0)} kB packed, ${(packed.unpackedSize / 1024).toFixed(0)} kB unpacked`,
);

const app = join(work, "app");
cpSync(example, app, { recursive: true, filter: (src) => !/[/\\](node_modules|\.wrangler)$/.test(src) });
const manifest = JSON.parse(readFileSync(join(app, "package.json"), "utf8"));
manifest.dependencies["mqtt-workers-broker"] = `file:${tarball}`;
delete manifest.devDependencies.wrangler; // this repository's pinned one runs the project
writeFileSync(join(app, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
writeFileSync(join(app, "tsconfig.json"), `${JSON.stringify(CONSUMER_TSCONFIG, null, 2)}\n`);
// The README's optional alias (mqtt-packet's debug() made silent), resolved through the package's exports.
appendFileSync(join(app, "wrangler.toml"), '\n[alias]\n"debug" = "mqtt-workers-broker/silent-debug"\n');

step(`npm install in ${app}`);
run(
  "npm",
  ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel", "error"],
  app,
  "npm install of the tarball",
);

// The bridge CLI as `npx mqtt-workers-broker` finds it: the bin link, its dependency (ws), the version.
const bin = join(app, "node_modules/.bin/mqtt-workers-broker");
const version = run(bin, ["--version"], app, "the installed bin mqtt-workers-broker does not run").trim();
if (version !== packed.version) fail(`mqtt-workers-broker --version printed "${version}", not ${packed.version}`);

step("tsc --noEmit in the project");
run("npx", ["tsc", "-p", app], app, "the project does not type-check against the installed package", {
  stdio: "inherit",
});

// A bundle first: a build error shows here in seconds (wrangler dev would wait for a fix instead).
step("wrangler deploy --dry-run of the project");
run(
  "npx",
  ["wrangler", "deploy", "--dry-run", "-c", join(app, "wrangler.toml"), "--outdir", join(work, "dist")],
  root,
  "the project does not bundle with the installed package (wrangler's error above)",
  { env: { WRANGLER_SEND_METRICS: "false" } },
);

step("hooks tests against the installed package");
run(
  "npx",
  ["vitest", "run", "-c", "vitest.e2e.config.ts", "test/e2e/hooks-example.test.ts"],
  root,
  "the hooks tests failed against the installed package",
  { env: { HOOKS_EXAMPLE_CONFIG: join(app, "wrangler.toml") }, stdio: "inherit" },
);

rmSync(work, { recursive: true, force: true });
step("passed");
