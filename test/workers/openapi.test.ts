/**
 * GET /api/v1/openapi.json describes the routes the app registers: every /api/v1 route is in the
 * document with its method, and every documented operation answers with a status it documents
 * (never the app's "no such endpoint" 404), called with the admin token and no body or parameters
 * (so every call that changes something is refused before it acts).
 */
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { app } from "../../src/http/app";
import { OPENAPI_DOCUMENT, OPENAPI_PATH, type OpenApiDocument } from "../../src/http/openapi";
import { uid } from "../support/ids";

const ADMIN = { authorization: "Bearer workers-test-admin" };
const METHODS = ["get", "post", "put", "patch", "delete"] as const;

/** Hono's `/x/:id` as OpenAPI's `/x/{id}`. */
const openApiPath = (honoPath: string) => honoPath.replace(/:(\w+)/g, "{$1}");

function documented(doc: OpenApiDocument): { path: string; method: string }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    METHODS.filter((m) => m in item).map((method) => ({ path, method })),
  );
}

/** Every `$ref` in the document, as "#/components/..." strings. */
function refs(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(refs);
  if (value && typeof value === "object") {
    return Object.entries(value).flatMap(([k, v]) => (k === "$ref" && typeof v === "string" ? [v] : refs(v)));
  }
  return [];
}

describe("OpenAPI document", () => {
  it("is served without a token, as OpenAPI 3.1, every $ref resolving and operation ids unique", async () => {
    const res = await SELF.fetch(`http://broker${OPENAPI_PATH}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const doc = (await res.json()) as OpenApiDocument;
    expect(doc.openapi).toBe("3.1.0");
    expect(doc).toEqual(JSON.parse(JSON.stringify(OPENAPI_DOCUMENT)));
    for (const r of refs(doc)) {
      const target = r
        .replace(/^#\//, "")
        .split("/")
        .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], doc);
      expect(target, r).toBeDefined();
    }
    const ids = documented(doc).map(
      ({ path, method }) => (doc.paths[path] as Record<string, { operationId: string }>)[method]!.operationId,
    );
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("documents every /api/v1 route the app registers, with its method", () => {
    const ops = new Set(documented(OPENAPI_DOCUMENT).map(({ path, method }) => `${method} ${path}`));
    const apiRoutes = app.routes.filter((r) => r.path.startsWith("/api/v1/"));
    const handlers = apiRoutes.filter((r) => r.method !== "ALL");
    expect(handlers.length).toBeGreaterThan(10);
    const missing = handlers
      .map((r) => `${r.method.toLowerCase()} ${openApiPath(r.path)}`)
      .filter((op) => !ops.has(op));
    expect(missing).toEqual([]);
    // app.use() registers middleware as ALL: on "/x/*", or on a path that is documented. An
    // app.all() route elsewhere would answer every method, which no document here describes.
    const paths = new Set(Object.keys(OPENAPI_DOCUMENT.paths));
    const undocumentedAll = apiRoutes.filter(
      (r) => r.method === "ALL" && !r.path.endsWith("/*") && !paths.has(openApiPath(r.path)),
    );
    expect(undocumentedAll.map((r) => r.path)).toEqual([]);
  });

  it("every documented operation answers with a status it documents", async () => {
    const answers: string[] = [];
    for (const { path, method } of documented(OPENAPI_DOCUMENT)) {
      const op = (OPENAPI_DOCUMENT.paths[path] as Record<string, { responses: Record<string, unknown> }>)[method]!;
      const url = `http://broker${path.replace(/\{\w+\}/g, () => uid("openapi"))}`;
      const res = await SELF.fetch(url, { method: method.toUpperCase(), headers: ADMIN });
      const body = await res.text();
      const routeMissing = res.status === 404 && body.includes("no such endpoint");
      if (!(String(res.status) in op.responses) || routeMissing)
        answers.push(`${method} ${path}: ${res.status} ${body.slice(0, 120)}`);
    }
    expect(answers).toEqual([]);
  });
});
