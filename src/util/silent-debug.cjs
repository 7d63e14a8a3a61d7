/**
 * Stands in for the `debug` package inside the Worker bundle (wrangler.toml [alias]): mqtt-packet
 * calls debug() on every parse and generate, and the real package's checks showed up in CPU
 * profiles (~3% of the fan-in scenario). The broker never enables those logs, so they do nothing.
 * CommonJS, because mqtt-packet require()s it.
 */
function createDebug(namespace) {
  const debug = function () {};
  debug.enabled = false;
  debug.namespace = namespace || "";
  debug.extend = (suffix) => createDebug(`${debug.namespace}:${suffix}`);
  debug.log = function () {};
  return debug;
}
createDebug.enable = function () {};
createDebug.disable = () => "";
createDebug.enabled = () => false;
module.exports = createDebug;
