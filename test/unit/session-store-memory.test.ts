// The in-memory SessionStore against the contract every store passes.
import { MemorySessionStore } from "../../src/session/store";
import { sessionStoreContract } from "../support/session-store-contract";

sessionStoreContract("MemorySessionStore", async (body) => {
  const store = new MemorySessionStore();
  await body(store, () => store);
});
