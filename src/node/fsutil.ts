/** Files that are never half-written: write a temporary file, fsync it, rename it, fsync the folder. */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, existsSync, unlinkSync } from 'node:fs'
import { dirname, join, basename } from 'node:path'
import { randomBytes } from 'node:crypto'

export function ensureDir (path: string, mode = 0o700): void {
  mkdirSync(path, { recursive: true, mode })
}

export function atomicWrite (path: string, data: Uint8Array | string, mode = 0o600): void {
  const dir = dirname(path)
  ensureDir(dir)
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  const fd = openSync(tmp, 'wx', mode)
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data
    let off = 0
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off)
    fsyncSync(fd)
  } catch (e) {
    closeSync(fd)
    try { unlinkSync(tmp) } catch {}
    throw e
  }
  closeSync(fd)
  renameSync(tmp, path)
  const dfd = openSync(dir, 'r')
  try { fsyncSync(dfd) } finally { closeSync(dfd) }
}

export function readIfExists (path: string): Buffer | null {
  return existsSync(path) ? readFileSync(path) : null
}

/** Errors of the file system that a write meets when the disk is full or not writable. */
export function isStorageError (e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code
  return typeof code === 'string' && ['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'ENOTDIR', 'EIO', 'EISDIR'].includes(code)
}
