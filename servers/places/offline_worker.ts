/**
 * The Worker that builds the offline Places index (offline.ts): loads the places, builds the
 * kd-tree, transfers the arrays to the thread that started it, and is ended. Decoding the data
 * set is ~0.5 s of CPU that start-up no longer waits for.
 *
 * @module
 */

import { buildIndexData } from "./offline.ts";
import { errText } from "../text.ts";

const scope = globalThis as unknown as {
  postMessage(message: unknown, transfer?: Transferable[]): void;
};

try {
  const { built, transfer } = await buildIndexData();
  scope.postMessage(built, transfer);
} catch (err) {
  scope.postMessage({ error: errText(err) });
}
