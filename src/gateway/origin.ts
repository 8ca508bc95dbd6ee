/**
 * Which browser pages may use the gateway. Browsers always send `Origin`; other clients do not and
 * are judged by their token alone. Without an allowlist, a gateway that has no tokens accepts only
 * its own origin (its dashboard): otherwise any web page open in a browser on the same host could
 * drive it through localhost. With tokens, a page can do nothing without knowing one.
 *
 * "Its own origin" is only as good as the `Host` header: a DNS-rebinding page controls both Host and
 * Origin (its own name, re-pointed at 127.0.0.1) and sends no Origin at all on same-origin GETs. So
 * a tokenless loopback gateway also answers only to the host names it serves: IP literals (a
 * rebinding attack needs a DNS name), `localhost`, and names configured explicitly.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';

export interface OriginPolicy {
  /** Explicit allowlist (exact `scheme://host[:port]` strings); null = the default rule above. */
  allowed: ReadonlySet<string> | null;
  tokensRequired: boolean;
}

export function originAllowed(headers: IncomingHttpHeaders, policy: OriginPolicy): boolean {
  const origin = headers.origin;
  if (origin === undefined) return true;
  if (policy.allowed) return policy.allowed.has(origin);
  if (policy.tokensRequired) return true;
  try {
    return new URL(origin).host === headers.host;
  } catch {
    return false; // "null" (sandboxed frames, file://) and garbage
  }
}

/**
 * The host names a gateway answers to, or null for any: a gateway with tokens, or one deliberately
 * exposed without them (`insecure`), is not a loopback service a web page could rebind to.
 */
export function servedHosts(tokensRequired: boolean, loopbackOnly: boolean, configured: readonly string[] = []): ReadonlySet<string> | null {
  if (tokensRequired || !loopbackOnly) return null;
  return new Set(['localhost', ...configured.map((name) => name.toLowerCase())]);
}

export function hostAllowed(headers: IncomingHttpHeaders, hosts: ReadonlySet<string> | null): boolean {
  if (hosts === null || headers.host === undefined) return true; // no Host: not a browser
  let hostname: string;
  try {
    hostname = new URL(`http://${headers.host}`).hostname;
  } catch {
    return false;
  }
  const bare = hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '');
  return isIP(bare) !== 0 || hosts.has(bare);
}
