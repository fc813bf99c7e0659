/**
 * The rotation keys' string formats: `rotation` entries (`name:every:overlap`) and the
 * on-demand generations `npm run rotate` writes (`rotationGenerations`), as schemas whose
 * problems the spec's formatter words (config/messages.ts `parseFormat`).
 */
import { z } from "zod";
import { jsonObject } from "./formats";
import { key, parseFormat, show, VALUE_IN_MESSAGE } from "./messages";
import { type OnDemandRotation, parseDuration, type RotationPolicy } from "./rotation";
import { HS256_ROTATION_NAME } from "./settings";

/** What a `rotation` entry's name is checked against; `policies` holds the entries before it. */
interface RotationContext {
  names: Set<string>;
  supplied: Set<string>;
  /** Whether the HS256 secret (`jwtHs256Secret`) can rotate: only a generated secret can. */
  hs256: "generated" | "supplied" | "off";
  policies: Map<string, RotationPolicy>;
}

/** Why a policy may not name `name`, or undefined. */
function nameProblem(name: string, { names, supplied, hs256, policies }: RotationContext): string | undefined {
  if (name === HS256_ROTATION_NAME) {
    if (hs256 === "off")
      return `names \`${HS256_ROTATION_NAME}\`, but no HS256 secret is in use (\`jwtIssuer\` empty or \`HS256\` not in \`jwtAlgorithms\`); add \`HS256\` to \`jwtAlgorithms\` or remove the policy`;
    if (hs256 === "supplied")
      return `names \`${HS256_ROTATION_NAME}\`, which is set in the stack config; the program can only rotate secrets it generates: remove it (\`pulumi config rm ${HS256_ROTATION_NAME}\`) or remove the policy`;
    return policies.has(name) ? `is a second policy for ${show(name)}; give each secret one policy` : undefined;
  }
  if (!names.has(name)) return `names ${show(name)}, which is in neither \`apiKeys\` nor \`basicUsers\`; add \`${name}:<scope>\` to one of them or remove the policy`;
  if (policies.has(name)) return `is a second policy for ${show(name)}; give each credential one policy`;
  if (supplied.has(name))
    return `names ${show(name)}, whose secret is given in \`suppliedSecrets\`; the program can only rotate secrets it generates: remove it from \`suppliedSecrets\` or remove the policy`;
  return undefined;
}

/** `name:every:overlap` -> a policy, with every problem of the entry. */
const rotationEntry = (context: RotationContext) =>
  z.string().transform((item, ctx): RotationPolicy => {
    const parts = item.split(":");
    if (parts.length !== 3) {
      ctx.addIssue({
        code: "custom",
        input: item,
        message: "use `<name>:<every>:<overlap>`, such as `app:30d:48h` (every: `<n>d`, `<n>h` or `manual`; overlap: `<n>h`, `<n>d` or `0`)",
      });
      return z.NEVER;
    }
    const [name, every, overlap] = parts;
    const problem = nameProblem(name, context);
    if (problem) ctx.addIssue({ code: "custom", input: VALUE_IN_MESSAGE, message: problem });
    const everyMs = every === "manual" ? undefined : parseDuration(every, false);
    if (every !== "manual" && everyMs === undefined)
      ctx.addIssue({ code: "custom", path: ["every"], input: every, message: "use a period such as `30d` or `12h` (1 to 99999), or `manual` for on-demand rotation only" });
    const overlapMs = parseDuration(overlap, true);
    if (overlapMs === undefined)
      ctx.addIssue({ code: "custom", path: ["overlap"], input: overlap, message: "use a duration such as `48h` or `2d`, or `0` to refuse the previous secret at once" });
    else if (everyMs !== undefined && overlapMs >= everyMs)
      ctx.addIssue({
        code: "custom",
        path: ["overlap"],
        input: VALUE_IN_MESSAGE,
        message: `is ${show(overlap)}, not shorter than the period ${show(every)}; use an overlap shorter than the period, so at most two secrets are valid at once`,
      });
    return { name, everyMs, overlapMs: overlapMs ?? 0 };
  });

/** `rotation` entries -> policies, with every problem of every entry. */
export function parseRotation(
  list: string[],
  names: Set<string>,
  supplied: Set<string>,
  hs256: RotationContext["hs256"],
  errors: string[],
): Map<string, RotationPolicy> {
  const policies = new Map<string, RotationPolicy>();
  const entry = rotationEntry({ names, supplied, hs256, policies });
  // One by one: an entry is a second policy only after an accepted first one.
  list.forEach((item, i) => {
    const policy = parseFormat(entry, `rotation[${i}]`, item, errors);
    if (policy) policies.set(policy.name, policy);
  });
  return policies;
}

const EXAMPLE = '{"app": {"generation": 1, "at": "2026-11-05T10:00:00Z"}}';
const generationsFormat = jsonObject(`use a JSON object such as ${EXAMPLE} (\`npm run rotate\` writes it)`);
const onDemandShape = z.strictObject({
  generation: z.number().int().min(0),
  at: z.string().regex(/^\d{4}-\d\d-\d\dT/).refine((at) => !Number.isNaN(Date.parse(at))),
});
/** One `rotationGenerations` entry, as `npm run rotate` writes it; one message for any flaw. */
const onDemandEntry = z.unknown().transform((entry, ctx): OnDemandRotation => {
  const result = onDemandShape.safeParse(entry);
  if (result.success) return result.data;
  ctx.addIssue({ code: "custom", input: entry, message: `use {"generation": <whole number, 0 or more>, "at": "<ISO 8601 time>"}, such as ${EXAMPLE.slice(8, -1)}` });
  return z.NEVER;
});

/** `{"<name>": {"generation": n, "at": "<ISO time>"}}` -> the on-demand rotations of credentials with a policy. */
export function parseRotationGenerations(raw: string, policies: Map<string, RotationPolicy>, errors: string[]): Map<string, OnDemandRotation> {
  const result = new Map<string, OnDemandRotation>();
  for (const [name, entry] of Object.entries(parseFormat(generationsFormat, "rotationGenerations", raw, errors) ?? {})) {
    const label = `rotationGenerations.${name}`;
    if (!policies.has(name)) {
      errors.push(`${key(label)} names no credential with a \`rotation\` policy; add \`${name}:manual:24h\` (or a period) to \`rotation\`, or remove ${show(name)}.`);
      continue;
    }
    const onDemand = parseFormat(onDemandEntry, label, entry, errors);
    if (onDemand) result.set(name, onDemand);
  }
  return result;
}
