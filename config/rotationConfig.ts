/**
 * The rotation keys' string formats: `rotation` entries (`name:every:overlap`) and the
 * on-demand generations `npm run rotate` writes (`rotationGenerations`). Problems go to `errors`.
 */
import { parseJsonObject } from "./formats";
import { key, show } from "./messages";
import { type OnDemandRotation, parseDuration, type RotationPolicy } from "./rotation";
import { HS256_ROTATION_NAME } from "./settings";

/**
 * `name:every:overlap` entries -> policies, with every problem of every entry. `hs256` says
 * whether the name `jwtHs256Secret` (the HS256 secret) can rotate: only a generated secret can.
 */
export function parseRotation(
  list: string[],
  names: Set<string>,
  supplied: Set<string>,
  hs256: "generated" | "supplied" | "off",
  errors: string[],
): Map<string, RotationPolicy> {
  const policies = new Map<string, RotationPolicy>();
  list.forEach((item, i) => {
    const label = `rotation[${i}]`;
    const parts = item.split(":");
    if (parts.length !== 3) {
      errors.push(`${key(label)} is ${show(item)}; use \`<name>:<every>:<overlap>\`, such as \`app:30d:48h\` (every: \`<n>d\`, \`<n>h\` or \`manual\`; overlap: \`<n>h\`, \`<n>d\` or \`0\`).`);
      return;
    }
    const [name, every, overlap] = parts;
    let ok = true;
    if (name === HS256_ROTATION_NAME) {
      if (hs256 !== "generated") {
        errors.push(
          hs256 === "off"
            ? `${key(label)} names \`${HS256_ROTATION_NAME}\`, but no HS256 secret is in use (\`jwtIssuer\` empty or \`HS256\` not in \`jwtAlgorithms\`); add \`HS256\` to \`jwtAlgorithms\` or remove the policy.`
            : `${key(label)} names \`${HS256_ROTATION_NAME}\`, which is set in the stack config; the program can only rotate secrets it generates: remove it (\`pulumi config rm ${HS256_ROTATION_NAME}\`) or remove the policy.`,
        );
        ok = false;
      } else if (policies.has(name)) {
        errors.push(`${key(label)} is a second policy for ${show(name)}; give each secret one policy.`);
        ok = false;
      }
    } else if (!names.has(name)) {
      errors.push(`${key(label)} names ${show(name)}, which is in neither \`apiKeys\` nor \`basicUsers\`; add \`${name}:<scope>\` to one of them or remove the policy.`);
      ok = false;
    } else if (policies.has(name)) {
      errors.push(`${key(label)} is a second policy for ${show(name)}; give each credential one policy.`);
      ok = false;
    } else if (supplied.has(name)) {
      errors.push(
        `${key(label)} names ${show(name)}, whose secret is given in \`suppliedSecrets\`; the program can only rotate secrets it generates: remove it from \`suppliedSecrets\` or remove the policy.`,
      );
      ok = false;
    }
    const everyMs = every === "manual" ? undefined : parseDuration(every, false);
    if (every !== "manual" && everyMs === undefined) {
      errors.push(`${key(`${label}.every`)} is ${show(every)}; use a period such as \`30d\` or \`12h\` (1 to 99999), or \`manual\` for on-demand rotation only.`);
      ok = false;
    }
    const overlapMs = parseDuration(overlap, true);
    if (overlapMs === undefined) {
      errors.push(`${key(`${label}.overlap`)} is ${show(overlap)}; use a duration such as \`48h\` or \`2d\`, or \`0\` to refuse the previous secret at once.`);
      ok = false;
    } else if (everyMs !== undefined && overlapMs >= everyMs) {
      errors.push(`${key(`${label}.overlap`)} is ${show(overlap)}, not shorter than the period ${show(every)}; use an overlap shorter than the period, so at most two secrets are valid at once.`);
      ok = false;
    }
    if (ok) policies.set(name, { name, everyMs, overlapMs: overlapMs! });
  });
  return policies;
}

/** `{"<name>": {"generation": n, "at": "<ISO time>"}}`, as `npm run rotate` writes it. */
export function parseRotationGenerations(raw: string, policies: Map<string, RotationPolicy>, errors: string[]): Map<string, OnDemandRotation> {
  const result = new Map<string, OnDemandRotation>();
  const example = '{"app": {"generation": 1, "at": "2026-11-05T10:00:00Z"}}';
  const value = parseJsonObject(raw);
  if (!value) {
    errors.push(`${key("rotationGenerations")} is ${show(raw)}; use a JSON object such as ${example} (\`npm run rotate\` writes it).`);
    return result;
  }
  for (const [name, entry] of Object.entries(value)) {
    const label = `rotationGenerations.${name}`;
    if (!policies.has(name)) {
      errors.push(`${key(label)} names no credential with a \`rotation\` policy; add \`${name}:manual:24h\` (or a period) to \`rotation\`, or remove ${show(name)}.`);
      continue;
    }
    const e = entry as { generation?: unknown; at?: unknown } | null;
    const generationOk = typeof e === "object" && e !== null && Number.isInteger(e.generation) && (e.generation as number) >= 0;
    const atOk = typeof e === "object" && e !== null && typeof e.at === "string" && /^\d{4}-\d\d-\d\dT/.test(e.at) && !Number.isNaN(Date.parse(e.at));
    if (!generationOk || !atOk || Object.keys(e as object).some((k) => k !== "generation" && k !== "at")) {
      errors.push(`${key(label)} is ${show(entry)}; use {"generation": <whole number, 0 or more>, "at": "<ISO 8601 time>"}, such as ${example.slice(8, -1)}.`);
      continue;
    }
    result.set(name, { generation: e!.generation as number, at: e!.at as string });
  }
  return result;
}
