/**
 * Which browser pages may use the gateway. Browsers always send `Origin`; other clients do not and
 * are judged by their token alone. Without an allowlist, a gateway that has no tokens accepts only
 * its own origin (its dashboard): otherwise any web page open in a browser on the same host could
 * drive it through localhost. With tokens, a page can do nothing without knowing one.
 */
import type { IncomingHttpHeaders } from 'node:http';

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
