import { describe, expect, it } from 'vitest';
import { addDays, calendar, dayName, dayNumber } from '../../services/common/days.ts';

describe('report days', () => {
  it('add and subtract across months, years and leap days, the same when asked again', () => {
    expect(addDays('2024-02-28', 1)).toBe('2024-02-29');
    expect(addDays('2024-02-28', 2)).toBe('2024-03-01');
    expect(addDays('2025-01-01', -1)).toBe('2024-12-31');
    expect(addDays('2025-01-01', -1)).toBe('2024-12-31');
    expect(addDays('1970-01-01', 0)).toBe('1970-01-01');
    expect(dayNumber('1970-01-11')).toBe(10);
    expect(dayName(dayNumber('2026-12-06'))).toBe('2026-12-06');
  });

  it('a calendar lists every day of its range, both ends included', () => {
    expect(calendar('2024-12-30', '2025-01-02')).toEqual(['2024-12-30', '2024-12-31', '2025-01-01', '2025-01-02']);
    expect(calendar('2025-01-02', '2025-01-01')).toEqual([]);
  });
});
