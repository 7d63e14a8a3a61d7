/** Security issue #11, finding 2: the pure cross-site check in front of state-changing admin calls. */
import { describe, expect, it } from "vitest";
import { crossSiteRefusal } from "../../src/http/cross-site";

const URL_ = "https://broker.example/api/v1/client/disconnect?clientId=x";
const basic = `Basic ${btoa("admin:token")}`;

function check(method: string, headers: Record<string, string>) {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return crossSiteRefusal({ method, url: URL_, header: (name) => lower[name.toLowerCase()] });
}

describe("crossSiteRefusal", () => {
  it("lets reads through whatever their origin (GET and HEAD change nothing)", () => {
    for (const method of ["GET", "HEAD", "get"]) {
      expect(
        check(method, { authorization: basic, origin: "https://evil.example", "sec-fetch-site": "cross-site" }),
      ).toBeUndefined();
    }
  });

  it("refuses a state-changing call that says it comes from another origin, whatever its credentials", () => {
    for (const method of ["POST", "DELETE", "PUT", "PATCH", "OPTIONS", "post"]) {
      for (const authorization of [basic, "Bearer token"]) {
        expect(check(method, { authorization, origin: "https://evil.example", "x-requested-by": "x" })).toMatch(
          /Origin "https:\/\/evil.example" is not this origin/,
        );
        expect(check(method, { authorization, origin: "null", "x-requested-by": "x" })).toMatch(/Origin "null"/);
        // another port of the same host is the same site but another origin
        expect(check(method, { authorization, origin: "https://broker.example:8443", "x-requested-by": "x" })).toMatch(
          /not this origin/,
        );
        for (const site of ["cross-site", "same-site", "none"]) {
          expect(check(method, { authorization, "sec-fetch-site": site, "x-requested-by": "x" })).toMatch(
            /Sec-Fetch-Site/,
          );
        }
      }
    }
  });

  it("needs a header a cross-site form cannot send: a Bearer token or X-Requested-By", () => {
    expect(check("POST", { authorization: basic })).toMatch(/needs a Bearer token or the X-Requested-By header/);
    expect(check("POST", {})).toMatch(/needs a Bearer token/);
    expect(check("POST", { authorization: "Bearer " })).toMatch(/needs a Bearer token/);
    expect(check("POST", { authorization: basic, "x-requested-by": "  " })).toMatch(/X-Requested-By/);
    expect(check("POST", { authorization: basic, "x-requested-by": "dashboard" })).toBeUndefined();
    expect(check("DELETE", { authorization: "Bearer token" })).toBeUndefined(); // curl, scripts
    expect(check("DELETE", { authorization: "bearer token" })).toBeUndefined();
  });

  it("lets the dashboard's own calls through (same origin, with its header)", () => {
    const own = {
      authorization: basic,
      origin: "https://broker.example",
      "sec-fetch-site": "same-origin",
      "x-requested-by": "dashboard",
    };
    expect(check("POST", own)).toBeUndefined();
  });
});
