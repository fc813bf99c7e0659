/** Section 4: time to the first streamed line or event, and the gaps between chunks. */
import type { BenchCredentials } from "../lib/credentials";
import { validKey } from "../lib/credentials";
import { fmt, log, median, quantile } from "../lib/stats";
import { destroyAgents, type StreamKind, type StreamSample, streamOnce } from "../lib/stream";
import type { Instances } from "./instances";
import { KEY_COUNTS, P } from "./params";

export interface StreamStats {
  kind: StreamKind;
  path: string;
  direct: { firstMedian: number; firstP99: number; gapMedian: number; gapP99: number; events: number };
  proxy: { firstMedian: number; firstP99: number; gapMedian: number; gapP99: number; events: number };
  firstMedianDelta: number;
  firstP99Delta: number;
  gapMedianDelta: number;
  gapP99Delta: number;
  repetitions: number;
}

export async function streaming(inst: Instances, creds: BenchCredentials): Promise<StreamStats[]> {
  const proxy = inst.ours.get(KEY_COUNTS[0])!;
  const auth = { Authorization: `Bearer ${validKey(creds, KEY_COUNTS[0])}` };
  const out: StreamStats[] = [];
  for (const kind of ["ndjson", "sse"] as StreamKind[]) {
    const samples: { direct: StreamSample[]; proxy: StreamSample[] } = { direct: [], proxy: [] };
    // Warm-up (connections, upstream keepalive), then alternate direct and proxy.
    for (let i = 0; i < 5; i++) {
      await streamOnce(inst.fake.url, kind, {});
      await streamOnce(proxy.url, kind, auth);
    }
    for (let i = 0; i < P.streamReps; i++) {
      if (i % 2 === 0) {
        samples.direct.push(await streamOnce(inst.fake.url, kind, {}));
        samples.proxy.push(await streamOnce(proxy.url, kind, auth));
      } else {
        samples.proxy.push(await streamOnce(proxy.url, kind, auth));
        samples.direct.push(await streamOnce(inst.fake.url, kind, {}));
      }
    }
    const summarize = (list: StreamSample[]) => {
      const firsts = list.map((s) => s.firstMs);
      const gaps = list.flatMap((s) => s.gapsMs);
      return {
        firstMedian: median(firsts),
        firstP99: quantile(firsts, 0.99),
        gapMedian: median(gaps),
        gapP99: quantile(gaps, 0.99),
        events: median(list.map((s) => s.events)),
      };
    };
    const direct = summarize(samples.direct);
    const viaProxy = summarize(samples.proxy);
    const stats: StreamStats = {
      kind,
      path: kind === "ndjson" ? "POST /api/generate" : "POST /v1/chat/completions (stream:true)",
      direct,
      proxy: viaProxy,
      firstMedianDelta: viaProxy.firstMedian - direct.firstMedian,
      firstP99Delta: viaProxy.firstP99 - direct.firstP99,
      gapMedianDelta: viaProxy.gapMedian - direct.gapMedian,
      gapP99Delta: viaProxy.gapP99 - direct.gapP99,
      repetitions: P.streamReps,
    };
    log(`streaming ${kind}: first event ${fmt(direct.firstMedian)} ms direct, ${fmt(viaProxy.firstMedian)} ms via gateway (p99 ${fmt(direct.firstP99)} / ${fmt(viaProxy.firstP99)}); gap median ${fmt(direct.gapMedian)} / ${fmt(viaProxy.gapMedian)} ms`);
    out.push(stats);
  }
  destroyAgents();
  return out;
}
