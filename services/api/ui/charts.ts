// Charts rendered on the server to SVG by Apache ECharts (its server-side renderer needs no DOM): pages need no
// script, work offline, and show the same picture to every browser. The sparklines of the domain list are a few
// points each, drawn directly.
import { Html, escapeHtml, raw } from './html.ts';

/** ECharts is loaded on the first chart, not at start-up: half a second of every API start otherwise. */
let library: Promise<typeof import('echarts')> | undefined;
const echarts = (): Promise<typeof import('echarts')> => (library ??= import('echarts'));

/** Colors with at least 3:1 contrast on white, one per series. */
const SUCCESS = '#2e7d32';
const FAILURE_COLORS = ['#c62828', '#ef6c00', '#6a1b9a', '#1565c0', '#ad1457', '#4e342e', '#00838f', '#827717'];

export interface DailyFailures {
  days: string[];
  successful: number[];
  /** Failed sessions per day, by result type (the summary's failed count where no detail says why: "unspecified"). */
  failedBy: Array<{ name: string; values: number[] }>;
}

/** Daily sessions: successful, and failed stacked by result type. */
export async function dailyChart(d: DailyFailures, title: string): Promise<Html> {
  const chart = (await echarts()).init(null, null, { renderer: 'svg', ssr: true, width: 760, height: 300 });
  try {
    chart.setOption({
      animation: false,
      aria: { enabled: true, label: { description: title } },
      textStyle: { fontFamily: 'system-ui, sans-serif' },
      grid: { left: 60, right: 16, top: 40, bottom: 40 },
      legend: { top: 0, type: 'scroll' },
      xAxis: { type: 'category', data: d.days.map((x) => x.slice(5)) },
      yAxis: { type: 'value', name: 'sessions', nameGap: 12 },
      series: [
        { name: 'successful', type: 'bar', stack: 'sessions', color: SUCCESS, data: d.successful },
        ...d.failedBy.map((f, i) => ({
          name: `failed: ${f.name}`,
          type: 'bar',
          stack: 'sessions',
          color: FAILURE_COLORS[i % FAILURE_COLORS.length],
          data: f.values,
        })),
      ],
    });
    return raw(chart.renderToSVGString());
  } finally {
    chart.dispose();
  }
}

/** A small line of daily failure rates (0 to 100%), with its figures in a label for screen readers. */
export function sparkline(rates: number[], label: string): Html {
  const w = 96;
  const h = 24;
  if (rates.length === 0) return raw('');
  const step = rates.length > 1 ? w / (rates.length - 1) : 0;
  const points = rates.map((r, i) => `${(i * step).toFixed(1)},${(h - 2 - Math.min(1, r) * (h - 4)).toFixed(1)}`);
  const worst = Math.max(...rates);
  const color = worst === 0 ? SUCCESS : FAILURE_COLORS[0]!;
  return raw(
    `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${escapeHtml(label)}">` +
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(' ')}"/></svg>`,
  );
}
