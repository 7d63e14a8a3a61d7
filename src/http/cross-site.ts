/**
 * Cross-site request forgery defence for the admin API and HTTP publish (pure: no Hono, no Cloudflare
 * imports).
 *
 * A browser that has opened /dashboard keeps the admin token as cached HTTP Basic credentials and
 * attaches them to any request to this origin, including a form POST or a no-cors fetch started by a
 * page on another origin. Such "simple" requests carry no custom header (adding one forces a CORS
 * preflight, which this Worker never grants) and the browser marks where they come from (Origin,
 * Sec-Fetch-Site). So a state-changing request is served only when
 * - it does not say it comes from another origin (Origin / Sec-Fetch-Site, when present), and
 * - it carries a header a cross-site page cannot send: a Bearer Authorization header (curl,
 *   Prometheus, scripts: no ambient credentials to abuse) or CSRF_HEADER (the dashboard sends it).
 */

/** The header the dashboard adds to its state-changing calls; any non-empty value. */
export const CSRF_HEADER = "X-Requested-By";

/** Methods that change nothing here (every GET/HEAD admin handler only reads). */
const SAFE_METHODS = new Set(["GET", "HEAD"]);

export interface RequestFacts {
  method: string;
  /** The request's own URL, for its origin. */
  url: string;
  header(name: string): string | undefined;
}

/** Why a request must be refused as possibly cross-site, or undefined when it may proceed. */
export function crossSiteRefusal(req: RequestFacts): string | undefined {
  if (SAFE_METHODS.has(req.method.toUpperCase())) return undefined;
  const site = req.header("Sec-Fetch-Site");
  // "same-site" is not enough: another port or subdomain of this host is another origin.
  if (site !== undefined && site !== "same-origin") {
    return `cross-site request refused: Sec-Fetch-Site is ${JSON.stringify(site)}, state-changing calls must come from this origin`;
  }
  const origin = req.header("Origin");
  if (origin !== undefined && origin !== new URL(req.url).origin) {
    return `cross-site request refused: Origin ${JSON.stringify(origin)} is not this origin`;
  }
  if (!isBearer(req.header("Authorization")) && !req.header(CSRF_HEADER)?.trim()) {
    return `cross-site request refused: a state-changing call needs a Bearer token or the ${CSRF_HEADER} header`;
  }
  return undefined;
}

const isBearer = (authorization: string | undefined) => /^\s*bearer\s+\S/i.test(authorization ?? "");
