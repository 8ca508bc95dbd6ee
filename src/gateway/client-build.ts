/**
 * The client library's browser build, served by the gateway at /lib/ so the dashboard (and any page
 * on the gateway's origin) imports the same client services use. The compiled ES modules in dist/
 * run in a browser as they are (the client has no runtime dependencies), so nothing is bundled: the
 * gateway serves exactly the files the entry reaches through relative imports, and nothing else of dist/.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GatewayError } from '../errors.js';

/** URL prefix of the build: `/lib/client/index.js` is the entry. */
export const CLIENT_LIB_PREFIX = '/lib/';
export const CLIENT_ENTRY = 'client/index.js';
/** dist/ of this package, wherever this module runs from (src/gateway under the tests, dist/gateway in production). */
export const DIST_DIR = fileURLToPath(new URL('../../dist', import.meta.url));

const IMPORT = /(?:^|[;}\n])\s*(?:import|export)\s*(?:[\w*{}\s,$]*?\s*from\s*)?['"]([^'"]+)['"]/g;
const DYNAMIC_IMPORT = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/**
 * Every module the entry reaches, as paths relative to `root`. Throws when a module imports
 * anything but a relative path (a package or `node:`): that would not load in a browser.
 */
export function browserModules(root: string, entry = CLIENT_ENTRY): string[] {
  const seen = new Set<string>();
  const visit = (rel: string, from: string) => {
    if (seen.has(rel)) return;
    const file = join(root, rel);
    if (!existsSync(file)) throw new GatewayError('GW_ERR_INTERNAL', `${from} imports ${rel}, which is not in ${root} (run npm run build)`);
    seen.add(rel);
    // Comments may quote import lines (examples); only code counts.
    const code = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    for (const match of [...code.matchAll(IMPORT), ...code.matchAll(DYNAMIC_IMPORT)]) {
      const specifier = match[1]!;
      if (!specifier.startsWith('./') && !specifier.startsWith('../')) {
        throw new GatewayError('GW_ERR_INTERNAL', `${rel} imports '${specifier}': the client's browser build must import only its own modules`);
      }
      const target = normalize(join(dirname(rel), specifier));
      if (target.startsWith('..')) throw new GatewayError('GW_ERR_INTERNAL', `${rel} imports ${specifier}, outside ${root}`);
      visit(relative('.', target), rel);
    }
  };
  visit(entry, 'the entry');
  return [...seen].sort();
}

/** The files to serve, computed once; undefined when dist/ has no client build (then /lib/ is 404). */
export function clientBuildFiles(root = DIST_DIR): ReadonlySet<string> | undefined {
  if (!existsSync(join(root, CLIENT_ENTRY))) return undefined;
  return new Set(browserModules(root));
}
