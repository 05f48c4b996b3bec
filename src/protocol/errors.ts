/** Why the protocol refused an input. Every rejection has a code, a reason, and the peer it came from. */
export type RejectCode =
  | 'too-large' | 'malformed' | 'bad-version' | 'wrong-consortium' | 'not-member' | 'bad-signature'
  | 'old-round' | 'future-round' | 'wrong-phase' | 'replay' | 'equivocation' | 'invalid' | 'bad-share'
  | 'bad-blob' | 'wrong-proposer' | 'stale-round' | 'sync-failed' | 'bad-aggregate'

export class ProtocolError extends Error {
  readonly code: RejectCode
  constructor (code: RejectCode, message: string) {
    super(message)
    this.name = 'ProtocolError'
    this.code = code
  }
}

export const reject = (code: RejectCode, message: string): never => { throw new ProtocolError(code, message) }

/**
 * Run `fn`; a ProtocolError (hostile or broken input) goes to `onReject` and gives undefined,
 * anything else is a bug and is thrown on.
 */
export function orReject<T> (fn: () => T, onReject: (e: ProtocolError) => void): T | undefined {
  try {
    return fn()
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e
    onReject(e)
    return undefined
  }
}
