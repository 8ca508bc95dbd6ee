/**
 * Gateway tokens for tests, as a tokens file holds them: each token is named, the gateway keeps
 * only the SHA-256 of its secret. The secret is `<name>-secret` unless one is given.
 */
import { createHash } from 'node:crypto';
import { TokenAuthenticator, type Scope } from '../../src/gateway/auth.js';

export interface TestToken {
  name: string;
  scopes: Scope[];
  vms?: string[];
  secret?: string;
}

export const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');

export const secretOf = (token: TestToken): string => token.secret ?? `${token.name}-secret`;

/** The tokens file's JSON for these tokens. */
export function tokensFile(tokens: readonly TestToken[]): { tokens: Array<{ name: string; sha256: string; scopes: Scope[]; vms?: string[] }> } {
  return { tokens: tokens.map((t) => ({ name: t.name, sha256: sha256Hex(secretOf(t)), scopes: t.scopes, ...(t.vms ? { vms: t.vms } : {}) })) };
}

export function testTokens(...tokens: TestToken[]): TokenAuthenticator {
  return TokenAuthenticator.fromJson(tokensFile(tokens));
}

/** Request options (fetch, TestClient.connect) that present `secret`. */
export const bearer = (secret: string): { headers: { Authorization: string } } => ({ headers: { Authorization: `Bearer ${secret}` } });
