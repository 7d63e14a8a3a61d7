/**
 * Every configuration problem at once, each with the variable it is about: the limits
 * (config.ts), authentication and the ACL (auth/auth-config.ts), LOG_LEVEL, the switches and BRIDGES
 * (bridge/bridge-config.ts). The
 * Worker logs them when an isolate starts and on its first request, and `/health` answers 503 with
 * them, so a bad variable is seen at once rather than as MQTT clients that retry for ever.
 */
import { DEFAULT_CONFIG, limitProblems, loadConfig } from "./config";
import { parseBridges } from "./bridge/bridge-config";
import { bindingProblems, parseRules } from "./rules/rules-config";
import { loadAuthConfig } from "./auth/auth-config";
import { logLevelProblem } from "./observability/log";

export interface ConfigProblem {
  variable: string;
  problem: string;
}

/** Variables loadAuthConfig reads and checks on their own (the rest are free-form secrets). */
const AUTH_VARIABLES = [
  "ALLOW_ANONYMOUS",
  "AUTH_USERS",
  "JWT_JWKS_URL",
  "AUTH_HOOK_URL",
  "AUTH_HOOK_TIMEOUT_MS",
  "ACL",
  "ACL_DEFAULT",
  "ACL_DENIAL_REASON",
];

export function configProblems(env: Record<string, unknown>): ConfigProblem[] {
  const problems = limitProblems(env);
  for (const variable of AUTH_VARIABLES) {
    try {
      loadAuthConfig({ [variable]: env[variable] });
    } catch (err) {
      problems.push({ variable, problem: (err as Error).message });
    }
  }
  const rateLimit = env.CONNECT_RATE_LIMIT;
  if (rateLimit !== undefined && rateLimit !== "" && rateLimit !== "on" && rateLimit !== "off") {
    problems.push({
      variable: "CONNECT_RATE_LIMIT",
      problem: `CONNECT_RATE_LIMIT must be on or off, got ${JSON.stringify(String(rateLimit).slice(0, 40))}`,
    });
  }
  const level = logLevelProblem(env.LOG_LEVEL);
  if (level) problems.push({ variable: "LOG_LEVEL", problem: level });
  try {
    // The topic limits the bridges' filters are checked against (the defaults when those are invalid too).
    let limits = DEFAULT_CONFIG;
    try {
      limits = loadConfig(env);
    } catch {
      // reported above
    }
    // A Worker of the user's own (library.ts) has only the bindings its wrangler.toml declares.
    if (parseBridges(env, limits).length && env.BRIDGE === undefined) {
      problems.push({
        variable: "BRIDGES",
        problem: "BRIDGES needs the Durable Object binding BRIDGE (class BridgeObject, a new_sqlite_classes migration)",
      });
    }
  } catch (err) {
    problems.push({ variable: "BRIDGES", problem: (err as Error).message });
  }
  problems.push(...rulesProblems(env));
  return problems;
}

/** RULES (rules/rules-config.ts), and every binding its actions name (bindings are optional in wrangler.toml). */
function rulesProblems(env: Record<string, unknown>): ConfigProblem[] {
  let limits = DEFAULT_CONFIG; // when the configured topic limits are invalid (reported with the limits)
  try {
    limits = loadConfig(env);
  } catch {
    // reported by limitProblems
  }
  try {
    const rules = parseRules(env.RULES, limits);
    return bindingProblems(rules, env).map((problem) => ({ variable: "RULES", problem }));
  } catch (err) {
    return [{ variable: "RULES", problem: (err as Error).message }];
  }
}

const checked = new WeakMap<object, ConfigProblem[]>();

/** configProblems, worked out once per env object (an isolate's env does not change). */
export function configProblemsFor(env: object): ConfigProblem[] {
  let problems = checked.get(env);
  if (!problems) {
    problems = configProblems(env as Record<string, unknown>);
    checked.set(env, problems);
  }
  return problems;
}
