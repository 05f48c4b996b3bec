import * as assert from 'uvu/assert'

/** Assert that `fn` throws an instance of `type` (and, if given, with a message matching `message`). */
export function throwsA (fn: () => unknown, type: new (...args: never[]) => Error, message?: RegExp): void {
  let thrown: unknown
  try { fn() } catch (e) { thrown = e }
  if (thrown === undefined) assert.unreachable(`expected ${type.name} to be thrown`)
  if (!(thrown instanceof type)) assert.unreachable(`expected ${type.name}, got ${String(thrown)}`)
  if (message !== undefined) assert.match((thrown as Error).message, message)
}
