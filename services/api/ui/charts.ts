// Charts rendered on the server to SVG by Apache ECharts (its server-side renderer needs no DOM): pages need no
// script, work offline, and show the same picture to every browser. The sparklines of the domain list are a few
// points each, drawn directly. Both are drawn on a calendar: a day without reports is a gap, not skipped.
import { Html, escapeHtml, raw } from './html.ts';
import { calendar } from '../../common/days.ts';

/** ECharts is loaded on the first chart, not at start-up: half a second of every API start otherwise. */
let library: Promise<typeof import('echarts')> | undefined;
const echarts = (): Promise<typeof import('echarts')> => (library ??= import('echarts'));

/** Colors with at least 3:1 contrast on white, one per series. */
const SUCCESS = '#2e7d32';
const FAILURE_COLORS = ['#c62828', '#ef6c00', '#6a1b9a', '#1565c0', '#ad1457', '#4e342e', '#00838f', '#827717'];

export interface DailyFailures {
  /** Days with data, in order; the calendar days between them without data are drawn as gaps. */
  days: string[];
  successful: number[];
  /** Failed sessions per day, by result type (the summary's failed count where no detail says why: "unspecified"). */
  failedBy: Array<{ name: string; values: number[] }>;
  /** The calendar the chart spans (by default the first to the last of `days`). */
  range?: { from: string; to: string };
}

/** Ascending positions grouped into runs of consecutive ones: [1, 2, 4] → [[1, 2], [4]]. */
function runsOf(positions: number[]): number[][] {
  const out: number[][] = [];
  for (const p of positions) {
    const run = out[out.length - 1];
    if (run && run[run.length - 1] === p - 1) run.push(p);
    else out.push([p]);
  }
  return out;
}

/**
 * Daily sessions: successful, and failed stacked by result type, on a calendar axis: a day without reports is an
 * empty, shaded slot ("no reports"), not a missing column. Drawn wide and scaled by the page to fill its card.
 */
export async function dailyChart(d: DailyFailures, title: string): Promise<Html> {
  const all =
    d.days.length === 0 ? [] : calendar(d.range?.from ?? d.days[0]!, d.range?.to ?? d.days[d.days.length - 1]!);
  const at = new Map(d.days.map((day, i) => [day, i]));
  const on = (values: number[]) => all.map((day) => (at.has(day) ? values[at.get(day)!]! : null));
  // Runs of days without data, as positions on the axis.
  const empty = runsOf(all.flatMap((day, i) => (at.has(day) ? [] : [i])));
  const chart = (await echarts()).init(null, null, { renderer: 'svg', ssr: true, width: 1000, height: 320 });
  try {
    chart.setOption({
      animation: false,
      aria: { enabled: true, label: { description: title } },
      textStyle: { fontFamily: 'system-ui, sans-serif' },
      grid: { left: 60, right: 16, top: 40, bottom: 40 },
      legend: { top: 0, type: 'scroll' },
      // MM-DD within a year; whole dates when the chart spans more (the same MM-DD would name two days).
      xAxis: { type: 'category', data: all.length > 366 ? all : all.map((x) => x.slice(5)) },
      yAxis: { type: 'value', name: 'sessions', nameGap: 12 },
      series: [
        {
          name: 'successful',
          type: 'bar',
          stack: 'sessions',
          color: SUCCESS,
          data: on(d.successful),
          markArea: {
            silent: true,
            itemStyle: { color: 'rgba(0,0,0,0.06)' },
            label: { color: '#555', position: 'insideTop', fontSize: 11 },
            // By position on the axis, not by label.
            data: empty.map((run) => [{ name: 'no reports', xAxis: run[0]! }, { xAxis: run[run.length - 1]! }]),
          },
        },
        ...d.failedBy.map((f, i) => ({
          name: `failed: ${f.name}`,
          type: 'bar',
          stack: 'sessions',
          color: FAILURE_COLORS[i % FAILURE_COLORS.length],
          data: on(f.values),
        })),
      ],
    });
    return raw(chart.renderToSVGString());
  } finally {
    chart.dispose();
  }
}

/**
 * A small line of daily failure rates (0 to 100%) placed by date over `range`: days without data break the line,
 * and a lone day is a dot. Its figures are in a label for screen readers.
 */
export function sparkline(
  points: Array<{ day: string; rate: number }>,
  range: { from: string; to: string },
  label: string,
): Html {
  const w = 96;
  const h = 24;
  if (points.length === 0) return raw('');
  const days = calendar(range.from, range.to);
  const step = days.length > 1 ? (w - 4) / (days.length - 1) : 0;
  const index = new Map(days.map((d, i) => [d, i]));
  // Each point's height by its position in the range; then runs of consecutive days.
  const yAt = new Map(
    points.flatMap((p) => {
      const i = index.get(p.day);
      return i === undefined ? [] : [[i, h - 2 - Math.min(1, Math.max(0, p.rate)) * (h - 4)] as const];
    }),
  );
  const runs = runsOf([...yAt.keys()]).map((run) => run.map((i): [number, number] => [2 + i * step, yAt.get(i)!]));
  const worst = Math.max(...points.map((p) => p.rate));
  const color = worst === 0 ? SUCCESS : FAILURE_COLORS[0]!;
  const f = (n: number): string => n.toFixed(1);
  const marks = runs.map((run) =>
    run.length === 1
      ? `<circle cx="${f(run[0]![0])}" cy="${f(run[0]![1])}" r="2" fill="${color}"/>`
      : `<polyline fill="none" stroke="${color}" stroke-width="2" points="${run.map(([x, y]) => `${f(x)},${f(y)}`).join(' ')}"/>`,
  );
  return raw(
    `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${escapeHtml(label)}">` +
      `<line x1="2" y1="${h - 1}" x2="${w - 2}" y2="${h - 1}" stroke="#ccc" stroke-width="1"/>${marks.join('')}</svg>`,
  );
}
