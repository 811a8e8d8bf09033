import { readFile } from 'node:fs/promises'
import t from 'tap'

/** The container and `npm start` run the compiled server with the same `node` flags (the benchmark measures those). */
t.test('the Dockerfile CMD and npm start run node with the same flags', async t => {
  const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8')
  const { scripts } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }
  const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1]
  if (cmd === undefined) throw new Error('the Dockerfile has no exec-form CMD')
  t.same(JSON.parse(cmd), scripts.start.split(/\s+/), 'CMD is the start script, word for word')
  t.ok(scripts.start.endsWith(' dist/server.js'), 'and runs the compiled server')
  t.match(scripts.start, /--max-semi-space-size=\d+/, 'with the young generation the benchmark was tuned with')
})
