/**
 * Route policy: which scope each Ollama route needs. Deny by default: a method and path not
 * listed here is refused by the proxy, whatever the credential.
 *
 * Scopes nest: `admin` includes `inference`, which includes `read`.
 * `blocked` routes (Ollama account and cloud features) are refused for everyone.
 */
import type { Scope } from "./spec";

export type RouteClass = Scope | "blocked";

export interface RoutePolicyEntry {
  method: "GET" | "HEAD" | "POST" | "DELETE";
  /** Path as Ollama's router registers it; `:name` matches exactly one non-empty segment. */
  path: string;
  class: RouteClass;
  /**
   * Where the request names a model (checked for cloud models, logged): `json` fields of a JSON
   * body, the `multipart` form field `model`, or the `path` parameter. Absent: names none.
   */
  modelIn?: ModelSource;
}

export type ModelSource = "json" | "multipart" | "path";

type Method = RoutePolicyEntry["method"];
const entry = (routeClass: RouteClass) => (method: Method, path: string, modelIn?: ModelSource): RoutePolicyEntry =>
  modelIn ? { method, path, class: routeClass, modelIn } : { method, path, class: routeClass };
const read = entry("read");
const inference = entry("inference");
const admin = entry("admin");
const blocked = entry("blocked");

export const ROUTE_POLICY: readonly RoutePolicyEntry[] = [
  read("HEAD", "/"),
  read("GET", "/"),
  read("HEAD", "/api/version"),
  read("GET", "/api/version"),
  read("GET", "/api/status"),
  read("HEAD", "/api/tags"),
  read("GET", "/api/tags"),
  read("POST", "/api/show", "json"),
  read("GET", "/api/ps"),
  read("GET", "/v1/models"),
  read("GET", "/v1/models/:model", "path"),

  inference("POST", "/api/generate", "json"),
  inference("POST", "/api/chat", "json"),
  inference("POST", "/api/embed", "json"),
  inference("POST", "/api/embeddings", "json"),
  inference("POST", "/v1/chat/completions", "json"),
  inference("POST", "/v1/completions", "json"),
  inference("POST", "/v1/embeddings", "json"),
  inference("POST", "/v1/responses", "json"),
  inference("POST", "/v1/audio/transcriptions", "multipart"),
  inference("POST", "/v1/messages", "json"),

  // Model administration: downloads, uploads and deletes models on the server's disk.
  admin("POST", "/api/pull", "json"),
  admin("POST", "/api/push", "json"),
  admin("POST", "/api/create", "json"),
  admin("POST", "/api/copy", "json"),
  admin("DELETE", "/api/delete", "json"),
  admin("POST", "/api/blobs/:digest"),
  admin("HEAD", "/api/blobs/:digest"),
  // Recommendations are fetched from ollama.com by the server; an admin concern, not a client one.
  admin("GET", "/api/experimental/model-recommendations"),

  // Account and cloud features act with the server's ollama.com identity: never through the gateway.
  blocked("POST", "/api/me"),
  blocked("POST", "/api/signout"),
  blocked("DELETE", "/api/user/keys/:encodedKey"),
  blocked("POST", "/api/experimental/web_search"),
  blocked("POST", "/api/experimental/web_fetch"),
];

/**
 * Routes whose answer ends with Ollama's final (done) object carrying the token counts, for the C
 * token-accounting filter (image/proxy/usage-module/). gateway/governance.lua's
 * FINAL_OBJECT_ROUTES, for the Lua one, must match (test/usage-filter.test.ts).
 */
export const FINAL_OBJECT_PATHS: readonly string[] = ["/api/generate", "/api/chat"];

/** A scope allows every route class up to its own rank; rendered into config.lua for gateway/scopes.lua. */
export const SCOPE_RANK: Record<Scope, number> = { read: 1, inference: 2, admin: 3 };

/** True when a credential with `scope` may call a route of class `routeClass`. */
export function scopeAllows(scope: Scope, routeClass: RouteClass): boolean {
  return routeClass !== "blocked" && SCOPE_RANK[scope] >= SCOPE_RANK[routeClass];
}

/** Classifies a request the way the proxy does (for tests and docs); undefined = unknown route. */
export function classifyRoute(method: string, path: string): RouteClass | undefined {
  const segments = path.split("/");
  for (const route of ROUTE_POLICY) {
    if (route.method !== method) continue;
    const pattern = route.path.split("/");
    if (pattern.length !== segments.length) continue;
    if (pattern.every((part, i) => (part.startsWith(":") ? segments[i] !== "" : part === segments[i]))) return route.class;
  }
  return undefined;
}

/** Renders the policy as a Lua module: exact routes in a hash, one-parameter routes by prefix. */
export function renderRoutesLua(policy: readonly RoutePolicyEntry[] = ROUTE_POLICY): string {
  const exact: string[] = [];
  const prefixed: string[] = [];
  const modelIn: string[] = [];
  for (const route of policy) {
    const paramAt = route.path.indexOf("/:");
    if (paramAt === -1) {
      exact.push(`  [${luaString(`${route.method} ${route.path}`)}] = ${luaString(route.class)},`);
      if (route.modelIn) modelIn.push(`  [${luaString(`${route.method} ${route.path}`)}] = ${luaString(route.modelIn)},`);
    } else {
      if (route.path.indexOf("/", paramAt + 1) !== -1) throw new Error(`route ${route.path}: only a final parameter is supported`);
      const modelField = route.modelIn ? `, model_in = ${luaString(route.modelIn)}` : "";
      prefixed.push(
        `  { method = ${luaString(route.method)}, prefix = ${luaString(route.path.slice(0, paramAt + 1))}, class = ${luaString(route.class)}${modelField} },`,
      );
    }
  }
  return [
    "-- Generated by bundle/routes.ts from the route policy; do not edit.",
    "-- Deny by default: a method and path not listed here is refused.",
    "local _M = {}",
    "_M.exact = {",
    ...exact,
    "}",
    "-- A route whose last segment is a parameter: the rest of the path must be one non-empty segment.",
    "_M.prefixed = {",
    ...prefixed,
    "}",
    "-- Exact routes that name a model: in a JSON body (\"json\") or a multipart form (\"multipart\").",
    "_M.model_in = {",
    ...modelIn,
    "}",
    "-- Routes whose answer ends with Ollama's final (done) object, which token accounting reads.",
    "_M.final_object = {",
    ...FINAL_OBJECT_PATHS.map((p) => `  [${luaString(p)}] = true,`),
    "}",
    "return _M",
    "",
  ].join("\n");
}

export function luaString(value: string): string {
  return JSON.stringify(value); // JSON string escapes are valid Lua for the ASCII we emit
}
