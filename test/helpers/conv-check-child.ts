/**
 * Run as a child process by test/training/native-kernels.test.ts, with ONEDNN_MAX_CPU_ISA set: oneDNN
 * reads that cap once, before its first kernel, so each instruction set needs a process of its own.
 * Prints one JSON line: the instruction set oneDNN used, the worst errors and any failures.
 */
import { checkConvKernels } from './conv.ts'
import { nativeKernelCalls, nativeKernelStatus } from '../../src/training/native-kernels.ts'

const status = nativeKernelStatus()
const r = await checkConvKernels()
process.stdout.write(JSON.stringify({ ...r, isa: nativeKernelStatus().isa ?? null, active: status.active, calls: nativeKernelCalls() }) + '\n')
