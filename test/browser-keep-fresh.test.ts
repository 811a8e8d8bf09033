import { copyFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { build } from 'esbuild'
import t from 'tap'
import type { Browser, Page } from 'playwright-core'
import { chromiumMissing, launchChromium } from './chromium.js'
import { mangopayRateLimited, startBroker, type Broker } from './client-helpers.js'
import { packAndInstall } from './client-tarball.js'
import { tokenFor, until as eventually, USER_A, type TestContext } from './helpers.js'
import { ManualClock } from './manual-clock.js'

/**
 * keepFresh as a user ships it: the packed tarball installed into an empty project, bundled by
 * esbuild with a small page (fixtures/keep-fresh-page.js) and run in Chromium against a real
 * broker on another origin, the emulator minting short-lived tokens. Where timing matters to
 * the assertion, the page's clock is Playwright's, moved by the test.
 */

interface PageEvent {
  type: 'token' | 'error'
  kind: string
  at: number
  token?: { clientToken: string, expiresIn: number, userId: string }
  sdk?: Record<string, unknown>
  code?: string
  status?: number
  stopped?: boolean
}
interface PageRequest { url: string, at: number, status?: number, retryAfter?: string | null, answeredAt?: number, failed?: boolean }
interface Harness {
  events: PageEvent[]
  requests: PageRequest[]
  start (baseUrl: string, jwt: string): void
  keep (kind: string): void
  abort (kind: string): void
  stop (kind: string): void
  clear (): void
  wake (type: string): void
  until (count: number): Promise<PageEvent[]>
  distinctObjects (): boolean
}
declare const harness: Harness

const missing = chromiumMissing()
if (missing !== undefined) {
  t.plan(0, missing)
} else {
  await keepFreshTests()
}

async function keepFreshTests (): Promise<void> {
  const { consumer } = await packAndInstall(t)
  await copyFile(new URL('./fixtures/keep-fresh-page.js', import.meta.url), join(consumer, 'page.js'))
  const bundled = await build({ entryPoints: ['page.js'], absWorkingDir: consumer, bundle: true, format: 'esm', platform: 'browser', write: false, logLevel: 'silent' })
  const script = bundled.outputFiles[0]?.text ?? ''

  const site = createServer((req, res) => {
    if (req.url === '/page.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(script)
    else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>keepFresh</title><script type="module" src="/page.js"></script>')
  })
  await new Promise<void>(resolve => site.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`
  const browser: Browser = await launchChromium()
  t.teardown(async () => {
    await browser.close()
    await new Promise<void>(resolve => {
      site.close(() => resolve())
      site.closeAllConnections()
    })
  })

  /** A page signed in as USER_A (a JWT), against a broker whose emulator mints tokens of `ttlS`. */
  async function openPage (t: TestContext, ttlS: number, options: { pausedClock?: boolean, brokerClock?: ManualClock } = {}): Promise<{ page: Page, broker: Broker, errors: string[] }> {
    const deps = options.brokerClock === undefined ? {} : { clock: options.brokerClock }
    const broker = await startBroker(t, { CORS_ORIGINS: origin }, { emulator: { embeddedTtlS: ttlS }, deps })
    const context = await browser.newContext()
    t.teardown(async () => await context.close())
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', error => { errors.push(error.message) })
    if (options.pausedClock === true) await page.clock.install()
    await page.goto(`${origin}/`)
    if (options.pausedClock === true) await page.clock.pauseAt(await page.evaluate(() => Date.now()) + 1000)
    const jwt = await tokenFor(USER_A)
    await page.evaluate(([url, credential]) => { harness.start(url as string, credential as string) }, [broker.baseUrl, jwt])
    return { page, broker, errors }
  }

  /** The page's first `count` events; fails after 20 s of real time (the page's own timers may be paused). */
  async function until (page: Page, count: number): Promise<PageEvent[]> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`the page did not see ${count} events`)), 20_000)
    })
    try {
      return await Promise.race([page.evaluate(async n => await harness.until(n), count), timeout])
    } finally {
      clearTimeout(timer)
    }
  }
  const requests = async (page: Page) => await page.evaluate(() => harness.requests)

  t.test('a new token arrives before the old one expires (4 s tokens, real time)', async t => {
    const { page, broker, errors } = await openPage(t, 4)
    await page.evaluate(() => { harness.keep('recipients') })
    const events = await until(page, 3)
    await page.evaluate(() => { harness.stop('recipients'); harness.stop('recipients') })

    const minted = broker.emulator.control.minted
    t.same(events.map(e => e.type), ['token', 'token', 'token'], 'no error on the way')
    t.same(events.map(e => e.token?.clientToken), minted.slice(0, 3).map(m => m.token), 'each freshly minted token, in order')
    for (let i = 1; i < 3; i++) {
      const previous = minted[i - 1]
      const event = events[i]
      if (previous === undefined || event === undefined) continue
      t.ok(event.at < previous.expiresAt, `token ${i + 1} arrived ${previous.expiresAt - event.at} ms before token ${i} expired`)
      const life = (events[i - 1]?.token?.expiresIn ?? 0) * 1000
      t.ok(event.at - (events[i - 1]?.at ?? 0) >= life / 2 - 50, 'and not before half of the previous one\'s life')
    }
    t.same(events[0]?.sdk, { clientId: 'acme-client', clientToken: minted[0]?.token, userId: USER_A, environment: 'SANDBOX' }, 'sdkOptions: the four SDK fields')
    t.ok(await page.evaluate(() => harness.distinctObjects()), 'each onToken call got an object of its own')
    t.same(errors, [])
  })

  t.test('it stops on abort and on clear()', async t => {
    const { page, broker } = await openPage(t, 60, { pausedClock: true })
    await page.evaluate(() => { harness.keep('recipients'); harness.keep('checkout') })
    await until(page, 2)
    await page.evaluate(() => { harness.abort('recipients') })

    await page.clock.runFor(40_000) // checkout is due at half its 60 s life
    const events = await until(page, 3)
    t.same(events.slice(2).map(e => [e.type, e.kind]), [['token', 'checkout']], 'only the keeper still running refreshed')
    t.same((await requests(page)).filter(r => r.url.endsWith('/recipients')).length, 1, 'the aborted one asked nothing more')

    await page.evaluate(() => { harness.clear() })
    await page.clock.runFor(600_000)
    const after = await page.evaluate(() => harness.events)
    t.same(after.slice(3).map(e => [e.type, e.kind, e.code, e.stopped]), [['error', 'checkout', 'cleared', true]], 'clear(): the running keeper is told once; the aborted one is not')
    t.equal((await requests(page)).length, 3, 'nothing asked after clear(), ten minutes on')
    t.equal(broker.emulator.control.minted.length, 3)
  })

  t.test('a broker 503 with Retry-After is waited out, and the token still comes in time', async t => {
    // Both clocks are the test's: the page's (Playwright) and the broker's, whose quota pause ends when it says.
    const brokerClock = new ManualClock(Date.now())
    const { page, broker, errors } = await openPage(t, 60, { pausedClock: true, brokerClock })
    await page.evaluate(() => { harness.keep('recipients') })
    await until(page, 1)
    brokerClock.set(Date.now()) // the fault's reset time is counted from now
    broker.emulator.control.inject(mangopayRateLimited(2)) // the refresh meets Mangopay's 429: the broker pauses

    await page.clock.runFor(30_000) // the refresh is due at half the token's life
    await eventually('the refused refresh', async () => (await requests(page))[1]?.status !== undefined)
    const refused = (await requests(page))[1]
    t.equal(refused?.status, 503)
    const waitS = Number(refused?.retryAfter)
    t.ok(waitS >= 1 && waitS <= 10, `the broker said Retry-After: ${waitS}`)

    brokerClock.advance(waitS * 1000)
    await page.clock.runFor(waitS * 1000 - 10)
    t.equal((await requests(page)).length, 2, 'no retry before Retry-After')
    await page.clock.runFor(10)
    const events = await until(page, 2)
    t.same((await requests(page)).map(r => r.status), [200, 503, 200], 'then the retry is served')
    t.same(events.map(e => e.type), ['token', 'token'], 'onError was not called: the page never lacked a token')
    t.same(errors, [])
  })

  t.test('back online after a network failure, it asks again without waiting out the backoff', async t => {
    const { page, errors } = await openPage(t, 60, { pausedClock: true })
    await page.evaluate(() => { harness.keep('checkout') })
    await until(page, 1)
    await page.context().setOffline(true)
    await page.clock.runFor(30_000) // the refresh is due at half the token's life
    await eventually('the refresh to fail', async () => (await requests(page))[1]?.failed === true)
    t.equal((await requests(page)).length, 2, 'offline: the backoff holds the retry')
    const onlineAt = await page.evaluate(() => Date.now())

    await page.context().setOffline(false) // Chromium fires 'online'; the page's clock stays paused
    const events = await until(page, 2)
    const asked = await requests(page)
    t.same(asked.map(r => r.status), [200, undefined, 200], 'the failed refresh, then one retry, served')
    t.equal(asked[2]?.at, onlineAt, 'retried as the page came back online, the clock not moved')
    t.same(events.map(e => e.type), ['token', 'token'], 'onError was not called: the first token was still valid')
    t.same(errors, [])
  })

  t.test('after a sleep, a due token is fetched at once', async t => {
    const { page } = await openPage(t, 900, { pausedClock: true })
    await page.evaluate(() => { harness.keep('checkout') })
    await until(page, 1)
    const sleep = async (ms: number) => await page.clock.setSystemTime(await page.evaluate(() => Date.now()) + ms)

    await sleep(870_000) // woken 30 s before expiry: inside the 60 s margin, no timer has fired
    t.equal((await requests(page)).length, 1, 'the clock moved, no timer fired')
    await page.evaluate(() => { harness.wake('visibilitychange') })
    await until(page, 2)
    t.equal((await requests(page)).length, 2, 'the tab shown again: refreshed at once')

    await sleep(2_000_000) // long past expiry
    await page.evaluate(() => { harness.wake('pageshow') })
    await until(page, 3)
    t.equal((await requests(page)).length, 3, 'a page restored from the back-forward cache: refreshed at once')

    await sleep(2_000_000)
    await page.clock.runFor(10_000)
    const events = await until(page, 4)
    t.equal((await requests(page)).length, 4, 'no event at all: the next wall-clock check, 10 s on, saw it')
    t.same(events.map(e => e.type), ['token', 'token', 'token', 'token'])
    t.equal(new Set(events.map(e => e.token?.clientToken)).size, 4, 'four different tokens')
  })
}
