/**
 * The connection snapshot stored with every lifecycle event (libs/connections/src/lifecycle-events.ts):
 * SNAPSHOT_FIELDS is exactly the output columns of RECORD_COLUMNS (so the payload's admin view
 * is built from a complete record, and a column added to one is noticed in the other), and it
 * never names a sealed column, nor does the SQL insertConnectionEvent builds from it.
 */
import { RECORD_COLUMNS, SEALED_COLUMNS } from './connection.mapper';
import { insertConnectionEvent, LifecycleEventType, SNAPSHOT_FIELDS } from './lifecycle-events';

/** The output name of each item of a SELECT list (`expr AS name`, or a bare column). */
function outputNames(selectList: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let current = '';
  for (const char of selectList) {
    if (char === '(') depth++;
    if (char === ')') depth--;
    if (char === ',' && depth === 0) {
      items.push(current);
      current = '';
    } else current += char;
  }
  items.push(current);
  return items.map((item) => {
    const trimmed = item.trim().replace(/\s+/g, ' ');
    const alias = / AS ([a-z_]+)$/i.exec(trimmed);
    return alias ? alias[1] : trimmed;
  });
}

describe('lifecycle event snapshots', () => {
  it('SNAPSHOT_FIELDS are exactly the output column names of RECORD_COLUMNS, in order', () => {
    const names = outputNames(RECORD_COLUMNS);
    expect(names.every((name) => /^[a-z_]+$/.test(name))).toBe(true);
    expect([...SNAPSHOT_FIELDS]).toEqual(names);
  });

  it('never name a sealed column', () => {
    const sealed = outputNames(SEALED_COLUMNS).filter((name) => !(SNAPSHOT_FIELDS as ReadonlyArray<string>).includes(name));
    expect(sealed).toEqual(['access_token_sealed', 'refresh_token_sealed', 'credential_sealed', 'derived_token_sealed']);
    // Only booleans say whether a token exists (has_refresh_token, has_derived_token), never the value.
    for (const field of SNAPSHOT_FIELDS) expect(field).not.toMatch(/sealed|secret|credential$|^(access|refresh|derived)_token$/);
    const sql = insertConnectionEvent(LifecycleEventType.Connected, 'c', 's.auth_mode');
    expect(sql).not.toMatch(/_sealed/);
    for (const field of SNAPSHOT_FIELDS) expect(sql).toContain(`'${field}', s.${field}`);
  });
});
