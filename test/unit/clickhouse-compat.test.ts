// The 18.16 forms of clickhouse-compat.ts that need no server (the probes run in test/integration/clickhouse-compat).
import { describe, expect, it } from 'vitest';
import { canReplaceViews, replaceViewForms } from '../../services/common/clickhouse-compat.ts';

describe('CREATE OR REPLACE VIEW on 18.16', () => {
  it('is a drop and a create of the view, and nothing for other statements', () => {
    expect(replaceViewForms('CREATE OR REPLACE VIEW v AS SELECT 1 AS one')).toEqual([
      'DROP TABLE IF EXISTS v',
      'CREATE VIEW v AS SELECT 1 AS one',
    ]);
    expect(replaceViewForms('CREATE VIEW IF NOT EXISTS v AS SELECT 1')).toBeUndefined();
    expect(replaceViewForms('CREATE TABLE t (x UInt8) ENGINE = Memory')).toBeUndefined();
  });

  it('is used for servers before 19 only', () => {
    expect(canReplaceViews('18.16.1')).toBe(false);
    expect(canReplaceViews('19.4.0.49')).toBe(true);
    expect(canReplaceViews('26.1.2.1')).toBe(true);
    expect(canReplaceViews('')).toBe(false);
  });
});
