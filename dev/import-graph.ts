// Which part of the repository imports which: services/<name>, services/common, schemas, deploy/scripts, dev, bench
// and test, drawn as a Mermaid graph. `npm run imports` writes it into docs/architecture.md between its markers;
// test/unit/imports.test.ts checks the rules it shows and that the drawing there is current.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The part a repository path belongs to: `services/api`, `services/common`, `schemas`, `deploy/scripts`, ... */
export function partOf(path: string): string {
  const [top, second] = path.split('/');
  if (top === 'services' || top === 'deploy') return `${top}/${second}`;
  return top ?? path;
}

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (path.endsWith('.ts')) yield path;
  }
}

/** Every relative import between files of the repository: [from file, to file]. */
export function fileImports(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const dir of ['services', 'schemas', 'deploy', 'dev', 'bench', 'test'])
    for (const file of sources(dir)) {
      const text = readFileSync(join(root, file), 'utf8');
      for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'(\.[^']+)'/g))
        out.push([file, relative(root, resolve(root, dirname(file), m[1]!))]);
      for (const m of text.matchAll(/import\('(\.[^']+)'\)/g))
        out.push([file, relative(root, resolve(root, dirname(file), m[1]!))]);
    }
  return out;
}

/** The parts' import edges, sorted: "from --> to". */
export function partEdges(): string[] {
  const edges = new Set<string>();
  for (const [from, to] of fileImports()) {
    const [a, b] = [partOf(from), partOf(to)];
    if (a !== b) edges.add(`${a} --> ${b}`);
  }
  return [...edges].sort();
}

/** The drawing: what runs in production and the scripts (the tests', the bench's and dev/'s edges left out). */
export function mermaid(): string {
  const id = (part: string): string => part.replace(/[^a-z]/g, '_');
  const drawn = (e: string): boolean => !/^(test|bench|dev) /.test(e) && !/ (test|bench|dev)$/.test(e);
  const lines = partEdges()
    .filter(drawn)
    .map((e) => {
      const [a, b] = e.split(' --> ') as [string, string];
      return `  ${id(a)}[${a}] --> ${id(b)}[${b}]`;
    });
  return ['```mermaid', 'graph LR', ...lines, '```'].join('\n');
}

const START = '<!-- import-graph: written by npm run imports -->';
const END = '<!-- /import-graph -->';

/** docs/architecture.md with the drawing between its markers replaced by the current one. */
export function withGraph(doc: string): string {
  const a = doc.indexOf(START);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`docs/architecture.md has no ${START} … ${END} markers`);
  return `${doc.slice(0, a + START.length)}\n\n${mermaid()}\n\n${doc.slice(b)}`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const path = join(root, 'docs/architecture.md');
  writeFileSync(path, withGraph(readFileSync(path, 'utf8')));
  console.log(`wrote the import graph into ${relative(process.cwd(), path)}`);
}
