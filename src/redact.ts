/** Keeps secret material out of logs: what `resolve()` returns prints and serialises without it. */
import { inspect } from 'node:util';
import { SECRET_FIELDS } from './types.js';

const SECRET = new Set<string>([...SECRET_FIELDS, 'secureContext']);

function redactedView(options: object): Record<string, unknown> {
  const view: Record<string, unknown> = {};
  for (const name of Object.keys(options)) {
    if (name === 'toJSON') continue;
    // Secret fields are not read: a context built on first use is not built to be printed.
    if (SECRET.has(name)) {
      const descriptor = Object.getOwnPropertyDescriptor(options, name);
      if (descriptor?.get || descriptor?.value !== undefined) view[name] = '[redacted]';
      continue;
    }
    const value = (options as Record<string, unknown>)[name];
    if (value !== undefined) view[name] = value;
  }
  return view;
}

/**
 * Adds `toJSON` and `util.inspect.custom` as enumerable properties, so that copies made by spreading
 * (`{ ...options, host }`) stay redacted too. Node's TLS code ignores both.
 */
export function redactOptions<T extends object>(options: T): T {
  return Object.assign(options, {
    toJSON(this: object) {
      return redactedView(this);
    },
    [inspect.custom](this: object, _depth: number, inspectOptions: object) {
      return `TlsOptions ${inspect(redactedView(this), inspectOptions)}`;
    },
  });
}

/**
 * Makes a provider object print (`util.inspect`, `console.log`) and serialise (`JSON.stringify`) as its name
 * and the `fields` given only: a provider holds values, credentials or clients that must not show when an
 * application logs it. Both hooks are non-enumerable, so the object's own keys are unchanged.
 */
export function redactProvider<T extends { readonly name: string }>(
  provider: T,
  className: string,
  fields: () => Readonly<Record<string, unknown>> = () => ({}),
): T {
  Object.defineProperty(provider, inspect.custom, {
    value: (_depth: number, options: object) =>
      `${className} ${inspect({ name: provider.name, ...fields() }, options)}`,
  });
  Object.defineProperty(provider, 'toJSON', { value: () => ({ provider: provider.name, ...fields() }) });
  return provider;
}
