/** The report mailboxes we accept: exact addresses, or `@domain` for a whole domain. Never relay. */
export function recipientPolicy(entries: readonly string[]): (address: string) => boolean {
  const addresses = new Set<string>();
  const domains = new Set<string>();
  for (const e of entries) {
    const v = e.trim().toLowerCase();
    if (v.startsWith('@')) domains.add(v.slice(1));
    else if (v) addresses.add(v);
  }
  return (address: string): boolean => {
    const a = address.trim().toLowerCase();
    const at = a.lastIndexOf('@');
    if (at <= 0) return false;
    return addresses.has(a) || domains.has(a.slice(at + 1));
  };
}
