/**
 * `serve` configuration: the JSON config file (validated against schemas/config.schema.json, errors
 * name the failing path), the flags that override it, and the parsing of `host:port` and
 * `NAME=ADDRESS`.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { ConfigError, UsageError } from '../errors.js';
import type { GatewayConfig } from '../generated/schema-types.js';
import { loadReachable } from '../protocol/schemas.js';

export type { GatewayConfig };

const CONFIG_SCHEMA = 'config.schema.json';
let validator: ValidateFunction | undefined;

function configValidator(): ValidateFunction {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, keywords: ['tsType'] });
    for (const [file, schema] of loadReachable([CONFIG_SCHEMA])) ajv.addSchema(schema, file);
    validator = ajv.getSchema(CONFIG_SCHEMA)!;
  }
  return validator;
}

/** Validate a parsed config; the error names the first failing path (JSON Pointer). */
export function validateConfig(value: unknown, origin: string): GatewayConfig {
  const validate = configValidator();
  if (validate(value)) return value as GatewayConfig;
  const first = validate.errors![0]!;
  const where = first.keyword === 'additionalProperties' ? `${first.instancePath}/${(first.params as { additionalProperty: string }).additionalProperty}` : first.instancePath || '/';
  const message = first.keyword === 'additionalProperties' ? 'unknown setting' : (first.message ?? 'is invalid');
  const more = validate.errors!.length > 1 ? ` (and ${validate.errors!.length - 1} more problem${validate.errors!.length > 2 ? 's' : ''})` : '';
  throw new ConfigError(`${message}${more}`, `${origin}: ${where}`);
}

/** Read, parse and validate a config file; relative paths in it are resolved against its directory. */
export async function loadConfigFile(path: string): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file: ${(error as Error).message}`, path);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`not JSON: ${(error as Error).message}`, path);
  }
  const config = validateConfig(value, path);
  const base = dirname(resolve(path));
  return {
    ...config,
    ...(config.tokens !== undefined ? { tokens: resolve(base, config.tokens) } : {}),
    ...(config.dashboardDir !== undefined ? { dashboardDir: resolve(base, config.dashboardDir) } : {}),
  };
}

/** Flags over file: scalar settings replace, `qmp` entries merge by VM name and `libvirt` ones by URI (a flag wins). */
export function mergeConfig(file: GatewayConfig, flags: GatewayConfig): GatewayConfig {
  const merged: GatewayConfig = { ...file };
  for (const [key, value] of Object.entries(flags) as [keyof GatewayConfig, unknown][]) {
    if (value !== undefined && key !== 'qmp' && key !== 'libvirt') (merged as Record<string, unknown>)[key] = value;
  }
  if (flags.qmp) merged.qmp = { ...file.qmp, ...flags.qmp };
  if (flags.libvirt) {
    const uris = new Set(flags.libvirt.map((entry) => entry.uri));
    merged.libvirt = [...(file.libvirt ?? []).filter((entry) => !uris.has(entry.uri)), ...flags.libvirt];
  }
  return merged;
}

/** `host:port` or `[v6]:port`. */
export function parseListen(text: string, origin = '--listen'): { host: string; port: number } {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) throw new UsageError(`${origin}: expected host:port (e.g. 127.0.0.1:8080), got ${JSON.stringify(text)}`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

/** `--qmp NAME=ADDRESS` (repeatable) into the config's `qmp` map. */
export function parseQmpFlags(values: readonly string[]): Record<string, string> {
  const qmp: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq <= 0 || eq === value.length - 1) throw new UsageError(`--qmp: expected NAME=ADDRESS (e.g. vm1=unix:/run/vm1.qmp), got ${JSON.stringify(value)}`);
    const name = value.slice(0, eq);
    if (Object.hasOwn(qmp, name)) throw new UsageError(`--qmp: VM ${JSON.stringify(name)} given twice`);
    qmp[name] = value.slice(eq + 1);
  }
  return qmp;
}

/** `--libvirt URI` (repeatable) into the config's `libvirt` list (the schema checks each URI). */
export function parseLibvirtFlags(values: readonly string[]): { uri: string }[] {
  const seen = new Set<string>();
  return values.map((uri) => {
    if (seen.has(uri)) throw new UsageError(`--libvirt: ${JSON.stringify(uri)} given twice`);
    seen.add(uri);
    return { uri };
  });
}
