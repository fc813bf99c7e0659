/**
 * The Ollama backends a Docker stack can have (docs/backends.md), named and addressed the same
 * way by the stack config's checks (config/backendsConfig.ts) and the components that create
 * them (components/OllamaGateway.ts): one fact in one place.
 */
import { SINGLE_BACKEND_NAME } from "./spec";

/** The port Ollama listens on, in its container and where a remote host publishes it. */
export const OLLAMA_PORT = 11434;
/** The single local server's backend name (and its alias on the private network). */
export const LOCAL_BACKEND_NAME = SINGLE_BACKEND_NAME;
/** The backend name of the container for `ollamaGpuDevices[index]`. */
export const gpuBackendName = (index: number) => `gpu${index}`;
/** A GPU as `--gpus device=` takes it: an index (`0`) or a UUID (`GPU-...`, `MIG-...`). */
export const GPU_DEVICE_ID = /^([0-9]{1,3}|(GPU|MIG)-[0-9A-Fa-f-]{8,64})$/;

/** `http://<address>:11434`, with IPv6 addresses in brackets. */
export function ollamaUrlAt(address: string, port = OLLAMA_PORT): string {
  return `http://${address.includes(":") ? `[${address}]` : address}:${port}`;
}
