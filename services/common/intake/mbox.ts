// Mail archives: an mbox file is messages after `From ` separator lines, with `>From ` lines unquoted one level
// (mboxrd; for mboxo the same reading is right but for lines that were `>From ` in the original).

/** The messages of an mbox file, in order. */
export function splitMbox(mbox: Buffer): Buffer[] {
  const s = mbox.toString('latin1');
  const starts: number[] = [];
  const re = /(^|\n)From [^\n]*\n/g;
  for (let m = re.exec(s); m; m = re.exec(s)) starts.push(m.index + (m[1] ?? '').length);
  return starts.map((start, i) => {
    const end = starts[i + 1] ?? s.length;
    const body = s.slice(s.indexOf('\n', start) + 1, end).replace(/(^|\n)>(>*From )/g, '$1$2');
    return Buffer.from(body, 'latin1');
  });
}
