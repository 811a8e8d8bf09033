import type { Dispatcher } from 'undici'

/**
 * Reads an undici response body as UTF-8, at most `limit` bytes: a larger body is destroyed
 * (the connection is not kept for it) and `undefined` is returned, so no upstream can make the
 * broker buffer megabytes. Plain 'data' events: an async iterator costs several times more per
 * body, and every token request reads one.
 */
export function readBounded (body: Dispatcher.ResponseData['body'], limit: number): Promise<string | undefined> {
  return new Promise<string | undefined>((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit) {
        body.off('data', onData)
        body.destroy()
        resolve(undefined)
        return
      }
      chunks.push(chunk)
    }
    body.on('data', onData)
    body.once('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8')))
    body.on('error', reject)
  })
}
