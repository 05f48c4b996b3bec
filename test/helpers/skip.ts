/**
 * A test that cannot run on this machine is registered as skipped, so that the runner's
 * "Skipped: N" (and CI's closing line) counts it, and its reason is printed where the run's log shows it.
 */
import type { Test } from 'uvu'

type Body = Parameters<Test>[1]

/** `test(name, fn)` where `reason` is null; otherwise a skipped test, with the reason printed. */
export function testUnless (test: Test, reason: string | null, name: string, fn: Body): void {
  if (reason === null) { test(name, fn); return }
  test.skip(name, fn)
  process.stdout.write(`  skipped: ${name}: ${reason}\n`)
}
