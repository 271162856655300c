// The services bundled for running: what `npm run build` makes and every script that starts a service runs.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const SERVICES = [
  'worker',
  'http-receiver',
  'smtp-receiver',
  'api',
  'scheduler',
  'mailbox-fetcher',
  'mta-sts',
] as const;
export type ServiceName = (typeof SERVICES)[number];

/** Where `npm run build` and `npm start` put the built services (gitignored). */
export const DIST_DIR = join(root, 'dist');

/**
 * Builds each service (services/<name>/main.ts and what it imports from this repository) into one file,
 * `<outDir>/<name>/main.mjs`, with a source map; npm packages stay imports, resolved from this repository's
 * node_modules, so `outDir` must be inside it. Services run this JavaScript rather than TypeScript through tsx: tsx's
 * loader thread was ~30 MB of every process, and its keep-names helper a cost on every named closure.
 */
export async function buildServices(outDir: string = DIST_DIR): Promise<void> {
  const { build } = await import('esbuild');
  await build({
    entryPoints: SERVICES.map((name) => ({ in: join(root, 'services', name, 'main.ts'), out: join(name, 'main') })),
    outdir: outDir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    logLevel: 'warning',
  });
}

/**
 * The node arguments that run a built service (see buildServices), for every script that starts one (npm start, the
 * tests, the benchmark). The worker runs with --expose-gc to collect after large reports (WORKER_GC_AFTER_BYTES);
 * package.json's `npm run worker` says the same.
 */
export function serviceArgs(name: ServiceName, nodeFlags: string[] = [], outDir: string = DIST_DIR): string[] {
  const flags = name === 'worker' ? ['--expose-gc', ...nodeFlags] : nodeFlags;
  return [...flags, '--enable-source-maps', join(outDir, name, 'main.mjs')];
}
