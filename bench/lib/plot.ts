/**
 * PNG plots: vega-lite spec -> vega -> SVG (headless, no canvas) -> PNG with resvg (prebuilt
 * binary, no build step). vega and vega-lite are ESM-only, hence the dynamic imports.
 */
import { writeFileSync } from "node:fs";

async function renderPng(spec: object, file: string): Promise<void> {
  const vegaLite = await import("vega-lite");
  const vega = await import("vega");
  const { Resvg } = await import("@resvg/resvg-js");
  const compiled = vegaLite.compile(spec as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  writeFileSync(file.replace(/\.png$/, ".svg"), svg);
  const png = new Resvg(svg, {
    background: "white",
    fitTo: { mode: "zoom", value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
  })
    .render()
    .asPng();
  writeFileSync(file, png);
}

export interface ScalingPoint {
  credentials: number;
  series: string;
  requestsPerSecond: number;
}

export async function plotScaling(points: ScalingPoint[], file: string, subtitle: string): Promise<void> {
  await renderPng(
    {
      $schema: "https://vega.github.io/schema/vega-lite/v6.json",
      title: { text: "Bearer throughput vs number of API keys (GET /api/version, 1 worker)", subtitle },
      width: 560,
      height: 340,
      data: { values: points },
      mark: { type: "line", point: { size: 60 } },
      encoding: {
        x: {
          field: "credentials",
          type: "quantitative",
          scale: { type: "log" },
          axis: { values: [10, 100, 1000, 10000, 100000], format: "~s" },
          title: "API keys configured (log scale)",
        },
        y: { field: "requestsPerSecond", type: "quantitative", scale: { type: "log" }, title: "requests/s (median, log scale)" },
        color: { field: "series", type: "nominal", title: null, legend: { orient: "bottom", labelLimit: 400 } },
        strokeDash: { field: "series", type: "nominal", legend: null },
      },
      config: { font: "DejaVu Sans" },
    },
    file,
  );
}

export interface LatencyBar {
  configuration: string;
  percentile: "p50" | "p90" | "p99";
  ms: number;
}

export async function plotLatency(bars: LatencyBar[], file: string, title: string, subtitle: string): Promise<void> {
  const order = [...new Set(bars.map((b) => b.configuration))];
  await renderPng(
    {
      $schema: "https://vega.github.io/schema/vega-lite/v6.json",
      title: { text: title, subtitle },
      width: { step: 26 },
      height: 320,
      data: { values: bars },
      mark: { type: "bar" },
      encoding: {
        x: { field: "configuration", type: "nominal", sort: order, title: null, axis: { labelAngle: -30, labelLimit: 260 } },
        xOffset: { field: "percentile", type: "nominal", sort: ["p50", "p90", "p99"] },
        y: { field: "ms", type: "quantitative", title: "latency (ms, median over rounds)" },
        color: { field: "percentile", type: "nominal", sort: ["p50", "p90", "p99"], title: "percentile" },
        tooltip: [{ field: "ms" }],
      },
      config: { font: "DejaVu Sans" },
    },
    file,
  );
}
