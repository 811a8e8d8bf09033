import type { Dispatcher } from 'undici'

/**
 * Reads an undici response body as UTF-8, at most `limit` bytes: a larger body is destroyed
 * (the connection is not kept for it) and `undefined` is returned, so no upstream can make the
 * broker buffer megabytes.
 */
export async function readBounded (body: Dispatcher.ResponseData['body'], limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).length
    if (size > limit) {
      body.destroy()
      return undefined
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}
