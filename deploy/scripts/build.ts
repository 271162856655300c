// npm run build: the services as JavaScript in dist/<name>/main.mjs (what npm start and the npm run <service> scripts
// run; see buildServices).
import { buildServices, DIST_DIR } from './bundle.ts';

await buildServices();
console.log(`built the services into ${DIST_DIR}`);
