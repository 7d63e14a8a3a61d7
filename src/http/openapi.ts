/**
 * The OpenAPI 3.1 description of the HTTP API, served at `GET /api/v1/openapi.json` without a
 * token: it describes the public interface, and the code is public. The endpoints keep their own
 * hand-written checks (publish-request.ts, admin-endpoints.ts); this document sits next to them,
 * and test/workers/openapi.test.ts fails when the app registers an /api/v1 path it does not describe,
 * or a described path does not answer with one of its documented statuses.
 *
 * Over 400 lines and still one concern: it is one document, a typed literal, and splitting it by
 * path would scatter what a reader compares side by side.
 */
import type { Hono } from "hono";
import type { Env } from "../env";
import { MAX_LIST } from "../registry/client-registry";
import { MAX_BATCH_MESSAGES } from "./publish-request";

export const OPENAPI_PATH = "/api/v1/openapi.json";

type Schema = Record<string, unknown>;
type Method = "get" | "post" | "delete";
interface Parameter {
  name: string;
  in: "query" | "path";
  required?: boolean;
  description: string;
  schema: Schema;
}
interface Operation {
  summary: string;
  description?: string;
  operationId: string;
  tags: string[];
  security?: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { required: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { $ref: string } | { description: string; content?: Record<string, { schema: Schema }> }>;
}
export interface OpenApiDocument {
  openapi: "3.1.0";
  info: { title: string; version: string; description: string; license: { name: string; identifier: string } };
  paths: Record<string, Partial<Record<Method, Operation>>>;
  components: {
    securitySchemes: Record<string, Schema>;
    schemas: Record<string, Schema>;
    responses: Record<string, Schema>;
  };
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Schema, description: string) => ({ description, content: { "application/json": { schema } } });
const error = (name: string) => ({ $ref: `#/components/responses/${name}` });
const str = { type: "string" };
const int = { type: "integer", minimum: 0 };
/** A broker bridge's state (bridge-client.ts's BridgeStatus): /api/v1/bridges, and the overview's `bridges`. */
const BRIDGE_STATUS = {
  type: "object",
  properties: {
    name: str,
    state: { enum: ["disconnected", "connecting", "connected", "unconfigured", "unreachable"] },
    lastError: str,
    queuedMessages: int,
    queuedBytes: int,
    received: int,
    sent: int,
    droppedOffline: int,
    droppedFull: int,
    droppedExpired: int,
    droppedRefused: int,
    unmapped: int,
  },
};
const counts = (description: string) => ({ type: "object", description, additionalProperties: int });

const ADMIN: Record<string, string[]>[] = [{ adminBearer: [] }, { adminBasic: [] }];
const PUBLISHER: Record<string, string[]>[] = [{ publishBearer: [] }];
/** Every admin call: a bad token, the admin API off or a cross-site request. */
const ADMIN_ERRORS = { "401": error("Unauthorized"), "403": error("Forbidden") };

const limit = (fallback: number): Parameter => ({
  name: "limit",
  in: "query",
  description: "Rows per answer.",
  schema: { type: "integer", minimum: 1, maximum: MAX_LIST, default: fallback },
});
const filter = (name: string, description: string, required = false): Parameter => ({
  name,
  in: "query",
  required,
  description: `${description} (a topic filter, URL-encoded: %23 for #).`,
  schema: { type: "string", default: required ? undefined : "#" },
});
const clientIdPath: Parameter = {
  name: "clientId",
  in: "path",
  required: true,
  description: "The client id, URL-encoded (ids such as . and .. need the query form).",
  schema: str,
};
const clientIdQuery: Parameter = {
  name: "clientId",
  in: "query",
  required: true,
  description: "The client id, URL-encoded; reaches every id.",
  schema: { type: "string", minLength: 1 },
};

function adminGet(
  operationId: string,
  summary: string,
  parameters: Parameter[],
  answer: Schema,
  extra: Operation["responses"] = {},
): Operation {
  return {
    summary,
    operationId,
    tags: ["admin"],
    security: ADMIN,
    parameters,
    responses: { "200": json(answer, summary), "400": error("BadRequest"), ...ADMIN_ERRORS, ...extra },
  };
}

/** The two spellings of each call on one client: the id as a path segment, and `?clientId=`. */
function perClient(
  method: Method,
  operationId: string,
  summary: string,
  answer: Schema,
  notFound: string,
): [Partial<Record<Method, Operation>>, Partial<Record<Method, Operation>>] {
  const op = (suffix: string, parameters: Parameter[]): Operation => ({
    summary,
    operationId: `${operationId}${suffix}`,
    tags: ["admin"],
    security: ADMIN,
    parameters,
    responses: {
      "200": json(answer, summary),
      "400": error("BadRequest"),
      ...ADMIN_ERRORS,
      "404": json(ref("Error"), notFound),
    },
  });
  return [{ [method]: op("", [clientIdPath]) }, { [method]: op("ByQuery", [clientIdQuery]) }];
}

const [describeByPath, describeByQuery] = perClient(
  "get",
  "getClient",
  "A client's session",
  ref("Session"),
  "no session for this client id",
);
const [disconnectByPath, disconnectByQuery] = perClient(
  "post",
  "disconnectClient",
  "Close a client's connection (the session stays)",
  {
    type: "object",
    properties: { clientId: str, disconnected: { const: true } },
  },
  "the client is not connected",
);
const [deleteByPath, deleteByQuery] = perClient(
  "delete",
  "deleteSession",
  "Disconnect a client and end its session",
  {
    type: "object",
    properties: { clientId: str, deleted: { const: true } },
  },
  "no session for this client id",
);

const publishResponses = (ok: Schema): Operation["responses"] => ({
  "200": json(ok, "routed: for QoS 1 and 2, every matching session holds the message durably"),
  "400": error("BadRequest"),
  "401": error("Unauthorized"),
  "403": error("Forbidden"),
  "413": json(ref("Error"), "the body or a message is too large, or the batch too long"),
  "415": json(ref("Error"), "the body is not application/json"),
  "503": json(ok, "not made durable: retry (a retry is a new message)"),
});

export const OPENAPI_DOCUMENT: OpenApiDocument = {
  openapi: "3.1.0",
  info: {
    title: "mqtt-workers-broker HTTP API",
    version: "1",
    description:
      'Publish without an MQTT connection, and administer the broker. Errors are JSON {"error": "..."}. See README.md, HTTP API.',
    license: { name: "MIT", identifier: "MIT" },
  },
  paths: {
    "/health": {
      get: {
        summary: "Configuration check",
        operationId: "health",
        tags: ["operations"],
        security: [],
        responses: {
          "200": json({ type: "object", properties: { status: { const: "ok" } } }, "configured"),
          "503": json(
            {
              type: "object",
              properties: {
                status: { const: "misconfigured" },
                problems: { type: "array", items: { type: "object", properties: { variable: str, problem: str } } },
              },
            },
            "every configuration problem",
          ),
        },
      },
    },
    "/metrics": {
      get: {
        summary: "Prometheus metrics",
        description: "Text exposition format 0.0.4, summed over every registry and topic shard (one call to each).",
        operationId: "prometheusMetrics",
        tags: ["operations"],
        security: ADMIN,
        responses: {
          "200": { description: "Prometheus text", content: { "text/plain": { schema: str } } },
          ...ADMIN_ERRORS,
        },
      },
    },
    [OPENAPI_PATH]: {
      get: {
        summary: "This document",
        operationId: "openApi",
        tags: ["operations"],
        security: [],
        responses: { "200": json({ type: "object" }, "OpenAPI 3.1") },
      },
    },
    "/api/v1/publish": {
      post: {
        summary: "Publish one message",
        description:
          "Checked by the same ACL and topic rules as an MQTT PUBLISH; the publisher acts as the token's user.",
        operationId: "publish",
        tags: ["publish"],
        security: PUBLISHER,
        requestBody: { required: true, content: { "application/json": { schema: ref("PublishMessage") } } },
        responses: publishResponses(ref("PublishResult")),
      },
    },
    "/api/v1/publish/batch": {
      post: {
        summary: "Publish several messages",
        description: "Validated all-or-nothing, routed in order per topic.",
        operationId: "publishBatch",
        tags: ["publish"],
        security: PUBLISHER,
        requestBody: {
          required: true,
          content: {
            "application/json": {
              schema: {
                oneOf: [
                  { type: "array", items: ref("PublishMessage"), minItems: 1, maxItems: MAX_BATCH_MESSAGES },
                  {
                    type: "object",
                    required: ["messages"],
                    properties: {
                      messages: {
                        type: "array",
                        items: ref("PublishMessage"),
                        minItems: 1,
                        maxItems: MAX_BATCH_MESSAGES,
                      },
                    },
                  },
                ],
              },
            },
          },
        },
        responses: publishResponses({
          type: "object",
          properties: { results: { type: "array", items: ref("PublishResult") } },
        }),
      },
    },
    "/api/v1/metrics": { get: adminGet("metrics", "The metrics as JSON", [], ref("Metrics")) },
    "/api/v1/bridges": {
      get: adminGet("bridges", "Each broker bridge's state (BRIDGES)", [], {
        type: "object",
        properties: {
          bridges: {
            type: "array",
            items: BRIDGE_STATUS,
          },
        },
      }),
    },
    "/api/v1/overview": {
      get: adminGet(
        "overview",
        "What the dashboard shows, in one call",
        [
          limit(100),
          { name: "prefix", in: "query", description: "Only clients whose ids start with this.", schema: str },
          {
            name: "after",
            in: "query",
            description: "The clients page starts after this id (the previous answer's clients.next).",
            schema: str,
          },
          filter("retained", "Retained messages listed: those whose topics match this"),
        ],
        {
          type: "object",
          properties: {
            collectedAt: str,
            cost: { type: "object" },
            metrics: ref("Metrics"),
            counts: counts("as the tables list them"),
            clients: ref("ClientPage"),
            subscriptions: ref("Subscriptions"),
            retained: { type: "object" },
            bridges: { type: "array", items: BRIDGE_STATUS },
          },
        },
      ),
    },
    "/api/v1/clients": {
      get: adminGet(
        "listClients",
        "Connected clients in id order",
        [
          limit(100),
          { name: "after", in: "query", description: "Start after this id (the previous page's next).", schema: str },
          { name: "prefix", in: "query", description: "Only ids starting with this.", schema: str },
        ],
        ref("ClientPage"),
      ),
    },
    "/api/v1/clients/{clientId}": describeByPath,
    "/api/v1/client": describeByQuery,
    "/api/v1/clients/{clientId}/disconnect": disconnectByPath,
    "/api/v1/client/disconnect": disconnectByQuery,
    "/api/v1/sessions/{clientId}": deleteByPath,
    "/api/v1/session": deleteByQuery,
    "/api/v1/retained": {
      get: adminGet(
        "listRetained",
        "Retained messages whose topics match",
        [filter("filter", "Topics to list"), limit(100)],
        {
          type: "object",
          properties: { retained: { type: "array", items: ref("RetainedMessage") }, truncated: { type: "boolean" } },
        },
      ),
      delete: {
        summary: "Delete retained messages whose topics match",
        operationId: "deleteRetained",
        tags: ["admin"],
        security: ADMIN,
        parameters: [filter("filter", "Topics to delete; required (# deletes all)", true)],
        responses: {
          "200": json({ type: "object", properties: { deleted: int } }, "how many were deleted"),
          "400": error("BadRequest"),
          ...ADMIN_ERRORS,
        },
      },
    },
    "/api/v1/subscriptions": {
      get: adminGet(
        "listSubscriptions",
        "Subscriptions whose filters lie within a filter, each once",
        [
          filter("filter", "Subscriptions to list"),
          { name: "clientId", in: "query", description: "Only this client's.", schema: str },
          limit(100),
        ],
        ref("Subscriptions"),
      ),
    },
  },
  components: {
    securitySchemes: {
      adminBearer: { type: "http", scheme: "bearer", description: "ADMIN_TOKEN" },
      adminBasic: {
        type: "http",
        scheme: "basic",
        description:
          "any user name, ADMIN_TOKEN as the password (the dashboard); add X-Requested-By to calls that change something",
      },
      publishBearer: {
        type: "http",
        scheme: "bearer",
        description: "ADMIN_TOKEN, API_TOKEN, or a JWT the broker accepts as an MQTT password",
      },
    },
    responses: {
      BadRequest: json(ref("Error"), "an invalid field or parameter, named in the message"),
      Unauthorized: json(ref("Error"), "missing or invalid token"),
      Forbidden: json(ref("Error"), "the API is off (no token configured), a cross-site request, or not authorized"),
    },
    schemas: {
      Error: {
        type: "object",
        required: ["error"],
        properties: { error: { type: "string", description: "what is wrong" } },
      },
      PublishMessage: {
        type: "object",
        required: ["topic"],
        additionalProperties: false,
        properties: {
          topic: { type: "string", description: "a topic name (no wildcards; not $SYS)" },
          payload: { type: "string", default: "" },
          encoding: { enum: ["utf8", "base64"], default: "utf8" },
          qos: { enum: [0, 1, 2], default: 0 },
          retain: { type: "boolean", default: false },
          properties: {
            type: "object",
            additionalProperties: false,
            properties: {
              payloadFormatIndicator: { enum: [0, 1] },
              messageExpiryInterval: int,
              contentType: str,
              responseTopic: str,
              correlationData: { type: "string", contentEncoding: "base64" },
              userProperties: {
                oneOf: [
                  { type: "array", items: { type: "array", prefixItems: [str, str], minItems: 2, maxItems: 2 } },
                  { type: "object", additionalProperties: { oneOf: [str, { type: "array", items: str }] } },
                ],
              },
            },
          },
        },
      },
      PublishResult: {
        type: "object",
        required: ["id"],
        properties: {
          id: str,
          matched: { ...int, description: "matching sessions and shared-subscription groups" },
          error: str,
        },
      },
      Metrics: {
        type: "object",
        properties: {
          connectedByVersion: counts("by protocol level: 3, 4, 5"),
          connected: int,
          connectsTotal: int,
          disconnectsTotal: int,
          received: counts("by QoS"),
          receivedBytes: int,
          delivered: counts("by QoS"),
          deliveredBytes: int,
          dropped: counts("by reason"),
          deliveryFailures: int,
          retainedMessages: int,
          retainedBytes: int,
          subscriptionEntries: int,
          deepQueues: int,
          queuedInDeepQueues: int,
          invocations: { type: "object", properties: { session: int, topicShard: int } },
          collectedAt: { type: "string", format: "date-time" },
        },
      },
      ClientPage: {
        type: "object",
        properties: {
          clients: {
            type: "array",
            items: {
              type: "object",
              properties: {
                clientId: str,
                version: { type: "integer" },
                username: str,
                remoteAddress: str,
                connectedAt: { type: "string", format: "date-time" },
                sessionPresent: { type: "boolean" },
                expiryInterval: int,
              },
            },
          },
          next: { type: ["string", "null"], description: "pass as after for the following page" },
        },
      },
      Session: {
        type: "object",
        properties: {
          clientId: str,
          connected: { type: "boolean" },
          protocolVersion: { type: "integer" },
          username: str,
          remoteAddress: str,
          connectedAt: { type: "string", format: "date-time" },
          expiryInterval: int,
          expiresAt: { type: "string", format: "date-time" },
          subscriptions: { type: "array", items: { type: "object" } },
          queued: int,
          inflight: int,
          droppedQueueFull: int,
          hasWill: { type: "boolean" },
          will: {
            type: "object",
            properties: { topic: str, qos: int, retain: { type: "boolean" }, delay: int, bytes: int },
          },
          outbound: { type: "array", items: { type: "object" } },
        },
      },
      Subscriptions: {
        type: "object",
        properties: {
          subscriptions: {
            type: "array",
            items: { type: "object", properties: { clientId: str, filter: str, qos: int } },
          },
          truncated: { type: "boolean" },
        },
      },
      RetainedMessage: {
        type: "object",
        properties: {
          topic: str,
          payload: str,
          encoding: { enum: ["utf8", "base64"] },
          bytes: int,
          qos: int,
          properties: { type: "object" },
          receivedAt: { type: "string", format: "date-time" },
        },
      },
    },
  },
};

export function mountOpenApiEndpoint(app: Hono<{ Bindings: Env }>): void {
  app.get(OPENAPI_PATH, (c) => c.json(OPENAPI_DOCUMENT));
}
