/**
 * `medmesh predict --explain`: each image's Grad-CAM map written as PNG files a clinician opens,
 * NAME.input.png (the image as decoded, enlarged to at least 224 pixels so that a 28-pixel image
 * can be seen) and NAME.gradcam.png (the map over it, at the same size). Files are written whole
 * or not at all.
 */
import { join } from 'node:path'
import { PNG } from 'pngjs'
import { explain, overlay } from '../training/grad-cam.ts'
import { decodeImage } from '../training/data/images.ts'
import { resize } from '../training/data/resize.ts'
import type { Picture } from '../training/data/dataset.ts'
import { atomicWrite, ensureDir } from './fsutil.ts'
import type { ModelSource } from './model-source.ts'

const MIN_SIDE = 224
const MAX_SIDE = 1024

/** The picture at a size to look at: small ones enlarged, large ones reduced, its aspect kept. */
function forViewing (p: Picture): Picture {
  const longest = Math.max(p.width, p.height)
  const scale = longest < MIN_SIDE ? Math.ceil(MIN_SIDE / longest) : longest > MAX_SIDE ? MAX_SIDE / longest : 1
  if (scale === 1) return p
  const width = Math.max(1, Math.round(p.width * scale))
  const height = Math.max(1, Math.round(p.height * scale))
  return { width, height, channels: p.channels, pixels: resize(p, width, height) }
}

function png (width: number, height: number, rgba: Uint8Array): Buffer {
  const image = new PNG({ width, height })
  image.data.set(rgba)
  return PNG.sync.write(image)
}

function rgbaOf (p: Picture): Uint8Array {
  const out = new Uint8Array(p.width * p.height * 4)
  for (let i = 0; i < p.width * p.height; i++) {
    for (let c = 0; c < 3; c++) out[4 * i + c] = Math.round(255 * Math.min(1, Math.max(0, p.pixels[i * p.channels + (p.channels === 1 ? 0 : c)])))
    out[4 * i + 3] = 255
  }
  return out
}

export function explainToFiles (source: ModelSource, images: Array<{ file: string, bytes: Uint8Array, pixels: Uint8Array }>, names: string[], outDir: string): Array<{ input: string, heatMap: string, layer: string }> {
  ensureDir(outDir, 0o755)
  return images.map((img, i) => {
    const [e] = explain(source.model, [img.pixels], source.norm)
    const view = forViewing(decodeImage(img.bytes, img.file))
    const input = join(outDir, `${names[i]}.input.png`)
    const heatMap = join(outDir, `${names[i]}.gradcam.png`)
    atomicWrite(input, png(view.width, view.height, rgbaOf(view)), 0o644)
    atomicWrite(heatMap, png(view.width, view.height, overlay(view, e.heat, source.size, source.size)), 0o644)
    return { input, heatMap, layer: e.layer }
  })
}
