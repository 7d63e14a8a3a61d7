/**
 * MQTT.js's browser bundle (node_modules/mqtt/dist/mqtt.min.js), imported as text by the
 * `[[rules]] type = "Text"` entry in wrangler.toml and served same-origin as /dashboard/mqtt.min.js
 * for the page's MQTT client (the CSP allows scripts from this origin only).
 */
// @ts-expect-error: a text module (wrangler rule), typed in mqtt-bundle.d.ts would be one more file
import bundle from "mqtt/dist/mqtt.min.js";

export const MQTT_BROWSER_BUNDLE: string = bundle;
