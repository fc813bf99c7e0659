/** Ollama model names, as the stack config accepts them and the components name their resources. */

/** `name` or `name:tag`, with a namespace or registry path allowed (`library/gemma3:1b`). */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}(:[A-Za-z0-9._-]{1,128})?$/;

/** Resource-name suffix for a model's pull container: `gemma3:1b` -> `gemma3-1b`. */
export function pullResourceSuffix(model: string): string {
  return model.toLowerCase().replace(/[^a-z0-9.-]+/g, "-");
}
