// Mail archives: an mbox file is messages after `From ` separator lines, with `>From ` lines unquoted one level
// (mboxrd; for mboxo the same reading is right but for lines that were `>From ` in the original). Read as a stream
// of any size: only the message being read is held, and one larger than the limit is dropped as it comes.

/** One message of an mbox: its bytes, or how many bytes it had past the limit (none of them kept). */
export type MboxMessage = { bytes: Buffer } | { tooLarge: number };

const FROM = Buffer.from('From ');

/** An mbox read chunk by chunk: `push` and `end` return the messages each completes. */
export class MboxSplitter {
  private parts: Buffer[] | undefined;
  private bytes = 0;
  private tooLarge = false;
  private atLineStart = true;
  private inSeparator = false;
  private carry: Buffer = Buffer.alloc(0);

  constructor(private readonly maxMessageBytes = Infinity) {}

  push(chunk: Buffer): MboxMessage[] {
    const out: MboxMessage[] = [];
    const data = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = Buffer.alloc(0);
    let i = 0;
    while (i < data.length) {
      if (this.inSeparator) {
        const nl = data.indexOf(10, i);
        if (nl < 0) return out;
        this.inSeparator = false;
        this.atLineStart = true;
        i = nl + 1;
        continue;
      }
      if (this.atLineStart) {
        // Too few bytes to tell a separator: decided with the next chunk.
        if (data.length - i < FROM.length && FROM.subarray(0, data.length - i).equals(data.subarray(i))) {
          this.carry = Buffer.from(data.subarray(i));
          return out;
        }
        if (data.subarray(i, i + FROM.length).equals(FROM)) {
          this.finish(out);
          this.parts = [];
          this.inSeparator = true;
          i += FROM.length;
          continue;
        }
      }
      const nl = data.indexOf(10, i);
      const end = nl < 0 ? data.length : nl + 1;
      this.add(data.subarray(i, end));
      this.atLineStart = nl >= 0;
      i = end;
    }
    return out;
  }

  end(): MboxMessage[] {
    const out: MboxMessage[] = [];
    if (this.carry.length > 0 && !this.inSeparator) this.add(this.carry);
    this.carry = Buffer.alloc(0);
    this.finish(out);
    return out;
  }

  /** Bytes of the current message (none before the first separator). */
  private add(piece: Buffer): void {
    if (!this.parts) return;
    this.bytes += piece.length;
    if (this.tooLarge) return;
    if (this.bytes > this.maxMessageBytes) {
      this.tooLarge = true;
      this.parts = [];
      return;
    }
    // A copy: the chunk it comes from is let go of.
    this.parts.push(Buffer.from(piece));
  }

  private finish(out: MboxMessage[]): void {
    if (this.parts) {
      if (this.tooLarge) out.push({ tooLarge: this.bytes });
      else out.push({ bytes: unquote(Buffer.concat(this.parts, this.bytes)) });
    }
    this.parts = undefined;
    this.bytes = 0;
    this.tooLarge = false;
  }
}

/** `>From ` lines back to `From `, one level (mboxrd). */
function unquote(message: Buffer): Buffer {
  const s = message.toString('latin1');
  return s.includes('>From ') ? Buffer.from(s.replace(/(^|\n)>(>*From )/g, '$1$2'), 'latin1') : message;
}

/** The messages of an mbox read as a stream of chunks, in order. */
export async function* mboxMessages(
  chunks: AsyncIterable<Buffer>,
  maxMessageBytes: number,
): AsyncGenerator<MboxMessage> {
  const splitter = new MboxSplitter(maxMessageBytes);
  for await (const chunk of chunks) yield* splitter.push(chunk);
  yield* splitter.end();
}

/** The messages of an mbox held in memory, in order. */
export function splitMbox(mbox: Buffer): Buffer[] {
  const splitter = new MboxSplitter();
  return [...splitter.push(mbox), ...splitter.end()].flatMap((m) => ('bytes' in m ? [m.bytes] : []));
}
