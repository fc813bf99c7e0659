/**
 * Rotation schedule: pure functions from (policy, on-demand request, date) to a generation.
 *
 * A credential's generation is the number of its current secret. It rises by one when a period
 * of `every` passes (periods are counted from the Unix epoch, so they are the same for every
 * run on a given date) and by one for each on-demand request (`rotationGenerations`, bumped by
 * `npm run rotate`). The same config and date always give the same generation: the program
 * reads the clock once, at start, and passes the date in.
 */

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

/** A credential's rotation policy, as declared in the `rotation` config list. */
export interface RotationPolicy {
  name: string;
  /** Rotation period in ms; undefined = on demand only (`manual`). */
  everyMs?: number;
  /** How long the previous secret keeps working after a rotation, in ms (0 = not at all). */
  overlapMs: number;
}

/** The last on-demand rotation of a credential, as recorded by `npm run rotate`. */
export interface OnDemandRotation {
  /** How many on-demand rotations there have been. */
  generation: number;
  /** When the last one was requested: the overlap of the secret it retired counts from then. */
  at: string;
}

/** A credential's rotation at a given date. */
export interface RotationState {
  /** Generation of the current secret. */
  generation: number;
  /** When the current generation took over (ISO); undefined before any rotation. */
  rotatedAt?: string;
  /** Until when the previous secret works (ISO); undefined when there is none. */
  previousNotAfter?: string;
  /** Whether the previous secret still goes into the credential files at this date. */
  previousLive: boolean;
  /** Start of the next scheduled period (ISO); undefined for on-demand-only policies. */
  nextRotation?: string;
}

const DURATION = /^([1-9][0-9]{0,4})(d|h)$/;

/** `30d`, `48h` -> ms; undefined when malformed. `0`, `0h` and `0d` are zero. */
export function parseDuration(text: string, allowZero: boolean): number | undefined {
  if (allowZero && /^0[dh]?$/.test(text)) return 0;
  const match = DURATION.exec(text);
  if (!match) return undefined;
  return Number(match[1]) * (match[2] === "d" ? DAY_MS : HOUR_MS);
}

/** Seconds precision, as the proxy compares times (unix seconds). */
const iso = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");

/** Where a credential's rotation stands at `nowMs`. Pure and deterministic. */
export function rotationState(policy: RotationPolicy, onDemand: OnDemandRotation | undefined, nowMs: number): RotationState {
  const period = policy.everyMs === undefined ? 0 : Math.floor(nowMs / policy.everyMs);
  const periodStart = policy.everyMs === undefined || period === 0 ? undefined : period * policy.everyMs;
  const requestedAt = onDemand && onDemand.generation > 0 ? Date.parse(onDemand.at) : undefined;
  const generation = period + (onDemand?.generation ?? 0);

  // The current generation took over at the later of the last period start and the last request.
  const starts = [periodStart, requestedAt].filter((t): t is number => t !== undefined);
  const rotatedAtMs = generation > 0 && starts.length > 0 ? Math.max(...starts) : undefined;
  const previousNotAfterMs = rotatedAtMs === undefined ? undefined : rotatedAtMs + policy.overlapMs;
  return {
    generation,
    rotatedAt: rotatedAtMs === undefined ? undefined : iso(rotatedAtMs),
    previousNotAfter: previousNotAfterMs === undefined ? undefined : iso(previousNotAfterMs),
    previousLive: previousNotAfterMs !== undefined && policy.overlapMs > 0 && nowMs < previousNotAfterMs,
    nextRotation: policy.everyMs === undefined ? undefined : iso((period + 1) * policy.everyMs),
  };
}

/** The program's one reading of the clock: `OLLAMA_GATEWAY_ROTATION_NOW` (ISO) when set, else now. */
export const ROTATION_NOW_VARIABLE = "OLLAMA_GATEWAY_ROTATION_NOW";

export function rotationClock(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const fixed = env[ROTATION_NOW_VARIABLE];
  if (fixed === undefined || fixed === "") return Date.now();
  const ms = Date.parse(fixed);
  if (Number.isNaN(ms)) throw new Error(`${ROTATION_NOW_VARIABLE} is ${JSON.stringify(fixed)}; use an ISO 8601 time such as 2026-11-05T00:00:00Z.`);
  return ms;
}
