/**
 * A test that cannot run on this machine registers nothing with the runner and prints one line,
 * `  skipped: <name>: <reason>`, which .ci/run counts into its closing line's "N skipped" (uvu's own
 * Skipped count is only for tests skipped by hand, which the project never leaves behind).
 */
import type { Test } from 'uvu'

type Body = Parameters<Test>[1]

/** `test(name, fn)` where `reason` is null; otherwise the skip line, and no test. */
export function testUnless (test: Test, reason: string | null, name: string, fn: Body): void {
  if (reason === null) { test(name, fn); return }
  process.stdout.write(`  skipped: ${name}: ${reason}\n`)
}
