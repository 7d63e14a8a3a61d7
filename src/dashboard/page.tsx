/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
// Both pragmas, not this repository's tsconfig: a Worker that installs the package bundles this file
// with its own settings (scripts/pack-check.mjs), where the default is React's classic transform.
/**
 * The dashboard's HTML, served by the Worker at /dashboard (admin token: Basic authentication in a
 * browser). The document is built with hono/jsx, which escapes every text and attribute value by
 * construction; it holds no data of its own. Its script (client-script.ts) polls the admin API and
 * renders what it gets as DOM text nodes, never as HTML. Script and styles are separate same-origin
 * files so that the Content-Security-Policy needs no 'unsafe-inline': an injected inline script or
 * event handler would not run, and the page may connect to nothing but its own origin.
 */
import { html } from "hono/html";
import type { FC } from "hono/jsx";

export const DASHBOARD_SCRIPT_PATH = "/dashboard/app.js";
export const DASHBOARD_STYLE_PATH = "/dashboard/app.css";
/** MQTT.js's browser bundle (mqtt-bundle.ts), for the in-page client. */
export const MQTT_BUNDLE_PATH = "/dashboard/mqtt.min.js";

/**
 * 'self' in connect-src also matches ws:/wss: to this host and port (CSP Level 3), which the in-page
 * MQTT client needs for /mqtt; nothing else may be fetched, framed, submitted to or used as a base.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** Headers of every dashboard response (the page, its script, its styles). */
export const DASHBOARD_HEADERS = {
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

/** Headers of the page itself: the policy above, and no framing (clickjacking the disconnect button). */
export const DASHBOARD_PAGE_HEADERS = {
  ...DASHBOARD_HEADERS,
  "Content-Security-Policy": DASHBOARD_CSP,
  "X-Frame-Options": "DENY",
};

const Stat: FC<{ id: string; label: string; note?: string }> = ({ id, label, note }) => (
  <div class="stat">
    <b id={id}>-</b>
    <span>{label}</span>
    {note ? <span class="note" id={note}></span> : null}
  </div>
);

/**
 * A table; on a narrow screen each row becomes a card whose cells show their column name (the
 * script copies it into `data-label`), so no column, and no button, lies beyond the screen.
 */
const Table: FC<{ columns: string[]; body: string }> = ({ columns, body }) => (
  <div class="table-wrap">
    <table class="cards">
      <thead>
        <tr>
          {columns.map((c) => (
            <th>{c}</th>
          ))}
        </tr>
      </thead>
      <tbody id={body}></tbody>
    </table>
  </div>
);

/**
 * The rules panel (RULES, docs/RULES.md): each configured rule's counts, as /metrics has them; hidden
 * when there are no rules. The script fills it from the overview (showRules).
 */
const RulesPanel: FC = () => (
  <section id="rules-view" hidden>
    <h2>Rules</h2>
    <p class="muted">Counted by the publishers' sessions and sent every 5 s, so up to about 5 s behind.</p>
    <Table columns={["rule", "matched", "actions ok", "actions failed"]} body="rules" />
  </section>
);

const STATS: [string, string, string?][] = [
  ["s-connected", "clients connected"],
  ["s-in-rate", "messages in / s"],
  ["s-out-rate", "messages out / s"],
  ["s-received", "messages received"],
  ["s-delivered", "copies delivered"],
  ["s-dropped", "dropped"],
  ["s-retained", "retained messages", "s-retained-note"],
  ["s-subs", "subscriptions", "s-subs-note"],
  ["s-deep", "deep queues"],
];

const CHARTS: [string, string][] = [
  ["chart-connections", "clients connected"],
  ["chart-messages", "messages / s: in (solid), out (dashed)"],
  ["chart-drops", "dropped / s"],
];

const QosSelect: FC<{ id: string }> = ({ id }) => (
  <select id={id} aria-label="QoS">
    <option value="0">QoS 0</option>
    <option value="1" selected>
      QoS 1
    </option>
    <option value="2">QoS 2</option>
  </select>
);

const DashboardPage: FC = () => (
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>MQTT broker dashboard</title>
      <link rel="stylesheet" href={DASHBOARD_STYLE_PATH} />
      <script src={MQTT_BUNDLE_PATH} defer></script>
      <script src={DASHBOARD_SCRIPT_PATH} defer></script>
    </head>
    <body>
      <header>
        <h1>MQTT broker</h1>
        <nav>
          <a href="#traffic">traffic</a>
          <a href="#clients-view">clients</a>
          <a href="#subs-view">subscriptions</a>
          <a href="#retained-view">retained</a>
          <a href="#bridges-view" id="bridges-nav" hidden>
            bridges
          </a>
          <a href="#try">try it</a>
        </nav>
        <span class="muted" id="updated">
          loading...
        </span>
      </header>
      <main>
        <section id="traffic" class="wide">
          <h2>Traffic</h2>
          <div class="stats">
            {STATS.map(([id, label, note]) => (
              <Stat id={id} label={label} note={note} />
            ))}
          </div>
          <div class="charts">
            {CHARTS.map(([id, label]) => (
              <figure>
                <figcaption>
                  {label} <span class="muted" id={`${id}-max`}></span>
                </figcaption>
                <svg id={id} viewBox="0 0 600 120" preserveAspectRatio="none" role="img" aria-label={label}></svg>
              </figure>
            ))}
          </div>
          <p class="muted">
            Charts: the last hour, sampled by this page every 2 s while it is open. <span id="cost"></span>
          </p>
        </section>
        <section id="clients-view">
          <h2>Connected clients</h2>
          <form id="client-search-form" class="row">
            <input id="client-search" aria-label="client id prefix" placeholder="search: client id prefix" />
            <button id="client-search-go">Search</button>
            <button id="client-open" type="button" title="open this exact client id, connected or not">
              Open session
            </button>
          </form>
          <p class="muted" id="clients-count"></p>
          <Table columns={["client id", "protocol", "user", "since", ""]} body="clients" />
          <div class="row pager">
            <button id="clients-prev" type="button" disabled>
              Previous
            </button>
            <span class="muted" id="clients-page"></span>
            <button id="clients-next" type="button" disabled>
              Next
            </button>
          </div>
        </section>
        <section id="client-view" hidden>
          <h2>
            Client <span id="client-title"></span>
          </h2>
          <div class="row">
            <button id="client-disconnect" type="button">
              Disconnect
            </button>
            <button id="client-delete" type="button" class="danger">
              Delete session
            </button>
            <button id="client-close" type="button" class="plain">
              Close
            </button>
          </div>
          <p class="muted" id="client-status"></p>
          <dl id="client-info"></dl>
          <h3>Subscriptions</h3>
          <Table columns={["filter", "QoS", "options"]} body="client-subs" />
          <h3>Queue and in flight (oldest first)</h3>
          <Table columns={["topic", "QoS", "state", "packet id", "bytes"]} body="client-outbound" />
          <h3>Will</h3>
          <p id="client-will"></p>
        </section>
        <section id="subs-view">
          <h2>Subscriptions</h2>
          <p class="muted" id="subs-count"></p>
          <Table columns={["client id", "filter", "QoS"]} body="subs" />
        </section>
        <RulesPanel />
        <section id="retained-view">
          <h2>Retained messages</h2>
          <form id="retained-form" class="row">
            <input id="retained-filter" aria-label="topic filter" value="#" />
            <button id="retained-go">Filter</button>
          </form>
          <p class="muted" id="retained-count"></p>
          <Table columns={["topic", "bytes", "payload", ""]} body="retained" />
          <div id="payload-view" hidden>
            <h3>
              Payload of <span id="payload-topic"></span>
            </h3>
            <pre id="payload-text"></pre>
            <button id="payload-close" type="button" class="plain">
              Close
            </button>
          </div>
        </section>
        <section id="bridges-view" hidden>
          <h2>Bridges to other brokers</h2>
          <p class="muted" id="bridges-count"></p>
          <Table
            columns={["bridge", "state", "last error", "queued", "in", "out", "dropped", "unmapped"]}
            body="bridges"
          />
        </section>
        <section id="try">
          <h2>Try it: an MQTT client in this page (MQTT.js)</h2>
          <form id="connect-form" class="row">
            <input id="url" aria-label="broker URL" />
            <input id="client-id" aria-label="client id" placeholder="client id" />
            <input id="username" aria-label="username" placeholder="username" autocomplete="off" />
            <input id="password" aria-label="password" placeholder="password" type="password" autocomplete="off" />
            <select id="protocol" aria-label="MQTT version">
              <option value="5" selected>
                MQTT 5.0
              </option>
              <option value="4">MQTT 3.1.1</option>
            </select>
            <button id="connect">Connect</button>
            <button id="disconnect" type="button" class="plain" disabled>
              Disconnect
            </button>
          </form>
          <form id="sub-form" class="row">
            <input id="sub-topic" aria-label="filter" placeholder="filter, e.g. demo/#" />
            <QosSelect id="sub-qos" />
            <button id="subscribe" disabled>
              Subscribe
            </button>
          </form>
          <form id="pub-form" class="row">
            <input id="pub-topic" aria-label="topic" placeholder="topic" />
            <input id="pub-payload" aria-label="message" placeholder="message" />
            <QosSelect id="pub-qos" />
            <label>
              <input type="checkbox" id="pub-retain" class="check" /> retain
            </label>
            <button id="publish" disabled>
              Publish
            </button>
          </form>
          <div id="log"></div>
        </section>
      </main>
    </body>
  </html>
);

/** The whole document. */
export const dashboardHtml = () => html`<!doctype html>${(<DashboardPage />)}`;
