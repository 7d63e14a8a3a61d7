// Types the `env` of cloudflare:test as the Worker's own bindings.
import type { Env as BrokerEnv } from "../../src/env";

declare global {
  namespace Cloudflare {
    interface Env extends BrokerEnv {}
  }
}
