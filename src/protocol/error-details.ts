/**
 * Turns ajv's errors into the protocol's `details`: one entry per problem, each with the JSON Pointer
 * of the offending field in the message and a sentence about that field. Client authors read these,
 * so they name the field (a missing or unknown property is reported at its own path) and drop ajv's
 * bookkeeping errors (`if`, the outer `anyOf`, `propertyNames`) in favour of the concrete cause.
 */
import type { AnySchemaObject, ErrorObject } from 'ajv';
import type { ErrorDetail } from '../generated/schema-types.js';

/** Bounds of ErrorDetails / ErrorDetail / ErrorText in protocol-common.schema.json. */
export const MAX_ERROR_DETAILS = 20;
export const MAX_DETAIL_TEXT = 512;
export const MAX_ERROR_TEXT = 2048;

/** Cut a text to `max` characters, marking the cut, so an answer never breaks its own schema. */
export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export function describeErrors(errors: readonly ErrorObject[], schema: AnySchemaObject): ErrorDetail[] {
  const details: ErrorDetail[] = [];
  const seen = new Set<string>();
  const add = (path: string, message: string): void => {
    const key = `${path}\u0000${message}`;
    if (seen.has(key) || details.length >= MAX_ERROR_DETAILS) return;
    seen.add(key);
    details.push({ path, message });
  };
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.schemaPath));
  const insideAnyOf = (error: ErrorObject): boolean => [...anyOfPaths].some((p) => error.schemaPath.startsWith(`${p}/`));

  for (const error of errors) {
    if (insideAnyOf(error)) continue; // reported once, as alternatives, with its anyOf
    if (error.keyword === 'if' || error.keyword === 'propertyNames' || error.keyword === 'oneOf') continue;
    if (error.keyword === 'anyOf') {
      const branches = errors.filter((e) => e.schemaPath.startsWith(`${error.schemaPath}/`));
      add(error.instancePath, joinAlternatives(branches));
      continue;
    }
    add(pathOf(error), sentence(error) + conditionSuffix(error, schema));
  }
  return details;
}

/** A problem with one field, shown as `path message` (the message itself when it is about the whole document). */
export function summarize(details: readonly ErrorDetail[]): string {
  const [first] = details;
  if (!first) return 'invalid message';
  const head = first.path === '' ? first.message : `${first.path} ${first.message}`;
  return details.length > 1 ? `${head} (and ${details.length - 1} more)` : head;
}

/** Escape one key for a JSON Pointer (RFC 6901). */
const pointerToken = (key: string): string => key.replace(/~/g, '~0').replace(/\//g, '~1');

function pathOf(error: ErrorObject): string {
  const { params } = error;
  if (error.propertyName !== undefined) return `${error.instancePath}/${pointerToken(error.propertyName)}`;
  if (error.keyword === 'required') return `${error.instancePath}/${pointerToken(String(params.missingProperty))}`;
  if (error.keyword === 'additionalProperties') return `${error.instancePath}/${pointerToken(String(params.additionalProperty))}`;
  return error.instancePath;
}

function sentence(error: ErrorObject): string {
  const { params } = error;
  const prefix = error.propertyName !== undefined ? 'key ' : '';
  switch (error.keyword) {
    case 'required':
      return 'is required';
    case 'additionalProperties':
      return 'is not allowed (unknown field)';
    case 'false schema':
      return 'is not allowed';
    case 'const':
      return `must be ${JSON.stringify(params.allowedValue)}`;
    case 'enum':
      return `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'type':
      return `must be ${article(String(params.type))}`;
    case 'minLength':
      return params.limit === 1 ? 'must not be empty' : `must be at least ${params.limit} characters long`;
    case 'maxLength':
      return `must be at most ${params.limit} characters long`;
    case 'minItems':
      return params.limit === 1 ? 'must not be empty' : `must have at least ${params.limit} items`;
    case 'maxItems':
      return `must have at most ${params.limit} items`;
    case 'maxProperties':
      return `must have at most ${params.limit} entries`;
    case 'uniqueItems':
      return `must not repeat items (items ${params.j} and ${params.i} are equal)`;
    default:
      return prefix + (error.message ?? `fails ${error.keyword}`);
  }
}

/**
 * "must be 0" + "must be >= 100" -> "must be 0 or >= 100"; identical branches collapse, and a wrong
 * type is reported alone (a string is neither 0 nor >= 100, but "must be an integer" is the point).
 */
function joinAlternatives(branches: ErrorObject[]): string {
  const typeErrors = branches.filter((e) => e.keyword === 'type');
  const unique = [...new Set((typeErrors.length > 0 ? typeErrors : branches).map(sentence))];
  return unique.map((s, i) => (i > 0 ? s.replace(/^must be /, '') : s)).join(' or ');
}

/**
 * Errors inside `allOf[i].then` / `allOf[i].else` hold only under a condition (e.g. `speed` only with
 * action set-speed); say which, read from the `if` beside them.
 */
function conditionSuffix(error: ErrorObject, schema: AnySchemaObject): string {
  const match = /^#\/allOf\/(\d+)\/(then|else)\//.exec(error.schemaPath);
  if (!match) return '';
  const branch = (schema.allOf as AnySchemaObject[] | undefined)?.[Number(match[1])];
  const condition = branch?.if?.properties as Record<string, { const?: unknown }> | undefined;
  if (!condition) return '';
  const terms = Object.entries(condition).map(([key, sub]) => `${key} is ${JSON.stringify(sub.const)}`);
  return match[2] === 'then' ? ` when ${terms.join(' and ')}` : ` unless ${terms.join(' and ')}`;
}

function article(type: string): string {
  if (type.includes(',')) return `of type ${type}`;
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}
