/**
 * QMP monitor addresses as users write them: `unix:/run/vm1.qmp`, `tcp:127.0.0.1:4444`,
 * `tcp:[::1]:4444`. The same spelling QEMU uses for `-qmp`, minus the `server`/`wait` options.
 */
import { ConfigError } from '../errors.js';
import type { QmpAddress } from './types.js';

const EXAMPLES = "expected 'unix:/path/to/socket', 'tcp:host:port' or 'tcp:[ipv6]:port'";

/**
 * Parse an address string. `field` names where the string came from (e.g. `--qmp vm1`) so the
 * ConfigError points at it.
 */
export function parseQmpAddress(text: string, field?: string): QmpAddress {
  const fail = (why: string): never => {
    throw new ConfigError(`invalid QMP address ${JSON.stringify(text)}: ${why}`, field);
  };
  if (typeof text !== 'string' || text.trim() === '') fail(`empty; ${EXAMPLES}`);
  if (text !== text.trim()) fail('leading or trailing whitespace');

  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (path === '') fail('the unix socket path is empty');
    if (path.includes('\0')) fail('the unix socket path contains a NUL byte');
    return { kind: 'unix', path };
  }
  if (text.startsWith('tcp:')) return parseTcp(text.slice('tcp:'.length), fail);
  if (text.startsWith('/')) fail(`missing the transport prefix (did you mean 'unix:${text}'?)`);
  return fail(EXAMPLES);
}

function parseTcp(rest: string, fail: (why: string) => never): QmpAddress {
  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) fail("unterminated '[' in the IPv6 host");
    host = rest.slice(1, close);
    if (rest[close + 1] !== ':') fail("expected ':port' after the bracketed IPv6 host");
    portText = rest.slice(close + 2);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon < 0) fail("missing ':port'");
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (host.includes(':')) fail(`an IPv6 host must be bracketed, e.g. 'tcp:[${host}]:${portText}'`);
  }
  if (host === '') fail('the tcp host is empty');
  if (!/^[0-9]+$/.test(portText)) fail(`the port ${JSON.stringify(portText)} is not a number`);
  const port = Number(portText);
  if (port < 1 || port > 65535) fail(`the port ${port} is outside 1..65535`);
  return { kind: 'tcp', host, port };
}

/** The inverse of parseQmpAddress: `formatQmpAddress(parseQmpAddress(s)) === s` for canonical input. */
export function formatQmpAddress(address: QmpAddress): string {
  if (address.kind === 'unix') return `unix:${address.path}`;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `tcp:${host}:${address.port}`;
}
