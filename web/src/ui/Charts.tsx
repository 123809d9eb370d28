import { useQuery } from "@connectrpc/connect-query";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useEffect, useMemo, useRef, useState } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { InstanceService, type ResourcePoint } from "../../../gen/myosicam/panel/v1/instance_pb.js";
import { toDate } from "../api/format";
import { Empty, Outcome } from "./common";

export const ranges = [
  { id: "1h", label: "1 hour", seconds: 3600 },
  { id: "24h", label: "24 hours", seconds: 86400 },
  { id: "7d", label: "7 days", seconds: 7 * 86400 },
] as const;

interface Series {
  title: string;
  unit: string;
  value(p: ResourcePoint): number;
}

const hostSeries: Series[] = [
  { title: "CPU", unit: "%", value: (p) => p.cpuPercent },
  { title: "Memory used", unit: "MB", value: (p) => p.memoryMb },
  { title: "Disk used", unit: "MB", value: (p) => p.diskMb },
  { title: "Load (1 min)", unit: "", value: (p) => p.load1 },
];
const instanceSeries: Series[] = [
  { title: "CPU", unit: "%", value: (p) => p.cpuPercent },
  { title: "Memory (resident)", unit: "MB", value: (p) => p.memoryMb },
  { title: "Disk (its directories)", unit: "MB", value: (p) => p.diskMb },
];

/**
 * CPU, memory, disk and load of a host or one instance over a range, one uPlot chart each. The
 * range's end is fixed when it is chosen (a new reading does not refetch 7 days of buckets).
 */
export function ResourceCharts({ serverId, instanceId, rangeSeconds }: { serverId: string; instanceId: string; rangeSeconds: number }) {
  // The span is fixed when the range is chosen: [since, until] in seconds, the charts' x axis.
  const span = useMemo(() => {
    const until = Math.floor(Date.now() / 1000);
    return { since: until - rangeSeconds, until };
  }, [rangeSeconds]);
  const since = useMemo(() => timestampFromDate(new Date(span.since * 1000)), [span]);
  const history = useQuery(InstanceService.method.getResourceHistory, { serverId, instanceId, since }, { staleTime: 60_000 });
  const points = history.data?.points ?? [];
  const series = instanceId ? instanceSeries : hostSeries;
  if (history.error) return <Outcome error={history.error} />;
  if (history.data && points.length === 0)
    return <Empty title="No readings in this range yet.">The agent sends one with every heartbeat; charts fill in as they arrive.</Empty>;
  return (
    <div className="charts" data-points={points.length}>
      {series.map((s) => (
        <Chart key={s.title} series={s} points={points} span={span} />
      ))}
    </div>
  );
}

function Chart({ series, points, span }: { series: Series; points: ResourcePoint[]; span: { since: number; until: number } }) {
  const { title, unit } = series;
  const data = useMemo<[number[], number[]]>(() => [points.map((p) => (toDate(p.at)?.getTime() ?? 0) / 1000), points.map(series.value)], [points, series]);
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const observer = new ResizeObserver(([entry]) => setWidth(Math.floor(entry?.contentRect.width ?? 0)));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  useEffect(() => {
    const el = box.current;
    if (!el || width === 0) return;
    const plot = new uPlot(
      {
        width,
        height: 160,
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true, range: [span.since, span.until] }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
        series: [{}, { label: unit ? `${title} (${unit})` : title, stroke: "#1f5fbf", width: 1.5, fill: "rgba(31,95,191,0.08)" }],
        axes: [{}, { size: 56 }],
      },
      data,
      el,
    );
    return () => plot.destroy();
  }, [width, data, title, unit, span]);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} className="chart-box" role="img" aria-label={`${title} over the chosen range, ${points.length} points`} />
    </figure>
  );
}
