// UTC report days as 'YYYY-MM-DD' strings: the unit of every report (RFC 8460 date-range) and of every read by day.
const DAY_MS = 86_400_000;

/** Days since 1970 of a `YYYY-MM-DD` day, remembered: a derivation asks for the same few hundred days many times. */
const numbers = new Map<string, number>();
const names = new Map<number, string>();
export function dayNumber(day: string): number {
  let n = numbers.get(day);
  if (n === undefined) {
    n = Math.round(Date.parse(`${day}T00:00:00Z`) / DAY_MS);
    if (numbers.size > 100_000) numbers.clear();
    numbers.set(day, n);
  }
  return n;
}

/** The `YYYY-MM-DD` of a day number. */
export function dayName(n: number): string {
  let name = names.get(n);
  if (name === undefined) {
    name = new Date(n * DAY_MS).toISOString().slice(0, 10);
    if (names.size > 100_000) names.clear();
    names.set(n, name);
  }
  return name;
}

export const addDays = (day: string, n: number): string => dayName(dayNumber(day) + n);

/** Every day from `from` to `to`, both included. */
export function calendar(from: string, to: string): string[] {
  const out: string[] = [];
  for (let n = dayNumber(from); n <= dayNumber(to); n++) out.push(dayName(n));
  return out;
}
