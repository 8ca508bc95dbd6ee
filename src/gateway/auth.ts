/**
 * Who is asking: bearer tokens from a tokens file, checked by SHA-256 digest in constant time.
 *
 * Tokens file: `{"tokens":[{"name":"dashboard","sha256":"<hex>","scopes":["read"],"vms":["vm1"]}]}`.
 * Only digests are stored, so the file is not a secret; tokens themselves are never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import { BEARER_SUBPROTOCOL_PREFIX } from '../protocol/codes.js';

export type Scope = 'read' | 'control';

export interface Principal {
  /** The token's name (for logs and per-token limits); `anonymous` without a tokens file. */
  readonly name: string;
  readonly scopes: ReadonlySet<Scope>;
  /** VMs this principal may see; null = all. */
  readonly vms: ReadonlySet<string> | null;
}

export const ANONYMOUS: Principal = Object.freeze({ name: 'anonymous', scopes: new Set<Scope>(['read', 'control']), vms: null });

/**
 * The two scopes are independent: `control` does not imply `read`. A control-only token (a service
 * that pivots the jobs it starts) may command jobs and sees the commanded job in each `result`, but
 * gets no snapshot, subscription or `GET /v1/jobs`.
 */
export function canRead(principal: Principal, vm: string): boolean {
  return principal.scopes.has('read') && mayUseVm(principal, vm);
}

export function canControl(principal: Principal, vm: string): boolean {
  return principal.scopes.has('control') && mayUseVm(principal, vm);
}

function mayUseVm(principal: Principal, vm: string): boolean {
  return principal.vms === null || principal.vms.has(vm);
}

interface TokenRecord {
  principal: Principal;
  digest: Buffer;
}

/** Resolves a presented token to a principal, or null. Without records, everyone is ANONYMOUS. */
export class TokenAuthenticator {
  private constructor(private readonly records: readonly TokenRecord[] | null) {}

  /** No tokens file: every client is ANONYMOUS (the server then only listens on loopback unless --insecure). */
  static open(): TokenAuthenticator {
    return new TokenAuthenticator(null);
  }

  static fromJson(json: unknown, origin = 'tokens'): TokenAuthenticator {
    return new TokenAuthenticator(parseTokens(json, origin));
  }

  static async fromFile(path: string): Promise<TokenAuthenticator> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read tokens file: ${(error as Error).message}`, path);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new ConfigError(`tokens file is not JSON: ${(error as Error).message}`, path);
    }
    return TokenAuthenticator.fromJson(json, path);
  }

  get required(): boolean {
    return this.records !== null;
  }

  /**
   * The principal for a presented token (undefined when none was presented), or null when it is
   * wrong. Every record is compared, so timing does not reveal which (or whether any) matched.
   */
  authenticate(token: string | undefined): Principal | null {
    if (this.records === null) return ANONYMOUS;
    if (token === undefined || token === '') return null;
    const digest = createHash('sha256').update(token, 'utf8').digest();
    let found: Principal | null = null;
    for (const record of this.records) {
      if (timingSafeEqual(record.digest, digest) && found === null) found = record.principal;
    }
    return found;
  }
}

/** The bearer token of an HTTP request: `Authorization: Bearer …`, else a `bearer.<token>` subprotocol. */
export function tokenFromRequest(headers: { authorization?: string | undefined; 'sec-websocket-protocol'?: string | undefined }): string | undefined {
  const authorization = headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return match ? match[1] : '';
  }
  for (const protocol of splitProtocols(headers['sec-websocket-protocol'])) {
    if (protocol.startsWith(BEARER_SUBPROTOCOL_PREFIX)) return protocol.slice(BEARER_SUBPROTOCOL_PREFIX.length);
  }
  return undefined;
}

function splitProtocols(header: string | undefined): string[] {
  return header ? header.split(',').map((p) => p.trim()).filter((p) => p !== '') : [];
}

function parseTokens(json: unknown, origin: string): TokenRecord[] {
  const fail = (path: string, message: string): never => {
    throw new ConfigError(message, `${origin}: ${path}`);
  };
  if (typeof json !== 'object' || json === null || !Array.isArray((json as { tokens?: unknown }).tokens)) {
    fail('/tokens', 'must be an array of {name, sha256, scopes, vms?}');
  }
  const names = new Set<string>();
  return ((json as { tokens: unknown[] }).tokens).map((raw, i) => {
    const at = `/tokens/${i}`;
    if (typeof raw !== 'object' || raw === null) fail(at, 'must be an object');
    const entry = raw as Record<string, unknown>;
    for (const key of Object.keys(entry)) if (!['name', 'sha256', 'scopes', 'vms'].includes(key)) fail(`${at}/${key}`, 'unknown field');
    const { name, sha256, scopes, vms } = entry;
    if (typeof name !== 'string' || name === '') fail(`${at}/name`, 'must be a non-empty string');
    if (names.has(name as string)) fail(`${at}/name`, `duplicate token name ${JSON.stringify(name)}`);
    names.add(name as string);
    if (typeof sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(sha256)) fail(`${at}/sha256`, 'must be the 64-hex-digit SHA-256 of the token');
    if (!Array.isArray(scopes) || scopes.length === 0 || !scopes.every((s) => s === 'read' || s === 'control')) {
      fail(`${at}/scopes`, 'must be a non-empty array of "read" and/or "control"');
    }
    if (vms !== undefined && (!Array.isArray(vms) || !vms.every((v) => typeof v === 'string' && v !== ''))) {
      fail(`${at}/vms`, 'must be an array of VM names');
    }
    return {
      digest: Buffer.from(sha256 as string, 'hex'),
      principal: Object.freeze({
        name: name as string,
        scopes: new Set(scopes as Scope[]),
        vms: vms === undefined ? null : new Set(vms as string[]),
      }),
    };
  });
}
