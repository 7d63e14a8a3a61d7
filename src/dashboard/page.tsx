/** @jsxImportSource hono/jsx */
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

const Stat: FC<{ id: string; label: string }> = ({ id, label }) => (
  <div class="stat">
    <b id={id}>-</b>
    <span>{label}</span>
  </div>
);

const Table: FC<{ title: string; columns: string[]; body: string }> = ({ title, columns, body }) => (
  <section>
    <h2>{title}</h2>
    <table>
      <thead>
        <tr>
          {columns.map((c) => (
            <th>{c}</th>
          ))}
        </tr>
      </thead>
      <tbody id={body}></tbody>
    </table>
  </section>
);

const STATS: [string, string][] = [
  ["s-connected", "clients connected"],
  ["s-in-rate", "messages in / s"],
  ["s-out-rate", "messages out / s"],
  ["s-received", "messages received"],
  ["s-delivered", "copies delivered"],
  ["s-dropped", "dropped"],
  ["s-retained", "retained messages"],
  ["s-subs", "subscription entries"],
  ["s-deep", "deep queues"],
];

const DashboardPage: FC = () => (
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>MQTT broker dashboard</title>
      <link rel="stylesheet" href={DASHBOARD_STYLE_PATH} />
      <script src={DASHBOARD_SCRIPT_PATH} defer></script>
    </head>
    <body>
      <header>
        <h1>MQTT broker</h1>
        <span class="muted" id="updated">
          loading...
        </span>
      </header>
      <main>
        <section>
          <h2>Traffic</h2>
          <div class="stats">
            {STATS.map(([id, label]) => (
              <Stat id={id} label={label} />
            ))}
          </div>
        </section>
        <Table title="Connected clients" columns={["client id", "protocol", "user", "since", ""]} body="clients" />
        <Table title="Subscriptions" columns={["client id", "filter", "QoS"]} body="subs" />
        <Table title="Retained topics" columns={["topic", "bytes", "payload"]} body="retained" />
        <section>
          <h2>Try it: an MQTT client in this page</h2>
          <form id="connect-form">
            <input id="url" aria-label="broker URL" />
            <input id="client-id" aria-label="client id" placeholder="client id" />
            <button id="connect">Connect</button>
          </form>
          <form id="sub-form">
            <input id="sub-topic" aria-label="filter" placeholder="filter, e.g. demo/#" />
            <button id="subscribe" disabled>
              Subscribe
            </button>
          </form>
          <form id="pub-form">
            <input id="pub-topic" aria-label="topic" placeholder="topic" />
            <input id="pub-payload" aria-label="message" placeholder="message" />
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
