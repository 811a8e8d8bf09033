import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import type { Page, Request } from 'playwright-core'
import { startDemo } from '../src/demo/start.js'
import { DEV_COOKIE_NAME } from '../src/auth/dev.js'
import { chromiumMissing, launchChromium } from './chromium.js'
import { API_KEY, CLIENT_ID, USER_A, USER_C, assertNoSecrets, captureLogs, type TestContext } from './helpers.js'

/**
 * The whole path in a real browser: headless Chromium (Debian's `chromium` package) driven by
 * playwright-core, against the demo (emulator + broker in dev auth + a second "frontend"
 * origin) started in-process on free ports.
 */

const ALICE = USER_A
const SCREENSHOT = 'test-artifacts/demo.png'

const missing = chromiumMissing()
if (missing !== undefined) {
  t.plan(0, missing)
} else {
  await browserTests()
}

async function browserTests (): Promise<void> {
  const logs = captureLogs('info')
  const demo = await startDemo({
    brokerPort: 0,
    frontendPort: 0,
    logger: logs.logger,
    clientId: CLIENT_ID,
    apiKey: API_KEY,
    env: { RATE_LIMIT_MAX: '100' }
  })
  const browser = await launchChromium()
  const sessionCookies: string[] = []
  t.teardown(async () => {
    await browser.close()
    await demo.close()
    assertNoSecrets(logs.text(), demo.emulator)
    for (const cookie of sessionCookies) {
      if (logs.text().includes(cookie)) throw new Error('a session cookie reached the logs')
    }
  })

  const { emulator } = demo
  const minted = () => emulator.control.minted
  const mintedTokens = () => minted().map(m => m.token)

  /** Requests the broker answered, from its access log. */
  function brokerRequests (method: string, url: string): number {
    return logs.lines().filter(line => {
      const req = line.req as { method?: string, url?: string } | undefined
      return line.msg === 'request completed' && req?.method === method && req.url === url
    }).length
  }

  interface Watched { page: Page, urls: string[], console: string[], errors: string[] }

  /** A page in a fresh context (its own cookies and storage), watched for errors and CSP reports. */
  async function openPage (t: TestContext): Promise<Watched> {
    const context = await browser.newContext()
    const page = await context.newPage()
    const watched: Watched = { page, urls: [], console: [], errors: [] }
    page.on('request', request => { watched.urls.push(request.url()) })
    page.on('console', message => { watched.console.push(message.text()) })
    page.on('pageerror', error => { watched.errors.push(error.message) })
    t.teardown(async () => {
      for (const cookie of await context.cookies()) {
        if (cookie.name === DEV_COOKIE_NAME) sessionCookies.push(cookie.value)
      }
      await context.close()
    })
    return watched
  }

  /** The page's own script ran clean, and no token ever went into a URL or browser storage. */
  async function checkHygiene (t: Test, watched: Watched): Promise<void> {
    t.same(watched.errors, [], 'no uncaught errors in the page')
    t.same(watched.console.filter(text => /Content Security Policy/i.test(text)), [], 'no CSP violation')
    const storage = await watched.page.evaluate(() => JSON.stringify({
      local: Object.entries(localStorage),
      session: Object.entries(sessionStorage),
      cookie: document.cookie
    }))
    for (const token of mintedTokens()) {
      if (watched.urls.some(url => url.includes(token)) || watched.page.url().includes(token)) t.fail('a token appeared in a URL')
      if (storage.includes(token)) t.fail('a token was written to localStorage, sessionStorage or a script-readable cookie')
      if ((await watched.page.content()).includes(token)) t.fail('a whole token is shown in the page')
    }
    t.notMatch(storage, DEV_COOKIE_NAME, 'the session cookie is not readable by script')
  }

  async function logIn (page: Page, user: string): Promise<void> {
    await page.waitForSelector('body[data-ready="true"]')
    await page.selectOption('#user-select', user)
    await page.click('#login')
    await page.locator('#signed-in').waitFor({ state: 'visible' })
  }

  async function renders (page: Page, kind: string): Promise<number> {
    return Number(await page.locator(`#${kind}`).getAttribute('data-renders') ?? 0)
  }

  /** Clicks the button and waits until the panel has rendered an answer (fetched or cached). */
  async function getToken (page: Page, kind: 'recipients' | 'checkout'): Promise<Record<string, unknown>> {
    const before = await renders(page, kind)
    await page.click(`#get-${kind}`)
    await page.waitForFunction(([k, n]) => Number(document.getElementById(k as string)?.dataset.renders ?? 0) > (n as number), [kind, before])
    return JSON.parse(await page.locator(`#${kind} [data-response]`).textContent() ?? '{}')
  }

  t.test('the demo page: log in, both tokens shown masked, with the SDK snippets', async t => {
    const watched = await openPage(t)
    const { page } = watched
    const response = await page.goto(`${demo.brokerUrl}/`)
    const csp = response?.headers()['content-security-policy'] ?? ''
    t.match(csp, /default-src 'none'/)
    t.match(csp, /script-src 'self'(;|$)/, 'only the page\'s own scripts run')

    await logIn(page, 'alice')
    t.match(await page.textContent('#who'), /^Alice/)
    const cookie = (await page.context().cookies()).find(c => c.name === DEV_COOKIE_NAME)
    t.match(cookie, { httpOnly: true, sameSite: 'Lax' }, 'an HttpOnly session cookie')

    const before = minted().length
    const recipients = await getToken(page, 'recipients')
    const checkout = await getToken(page, 'checkout')
    t.same(minted().slice(before).map(m => [m.kind, m.userId]), [['recipient', ALICE], ['checkout', ALICE]], 'one token of each kind for Alice')
    t.match(recipients, { clientToken: 'rec_•••', tokenType: 'Bearer', clientId: CLIENT_ID, userId: ALICE, environment: 'SANDBOX', scope: 'bankaccounts:r bankaccounts:w' })
    t.match(checkout, { clientToken: 'chk_•••', clientId: CLIENT_ID, userId: ALICE, environment: 'SANDBOX' })
    t.match(checkout.expiresAt, /^\d{4}-\d\d-\d\dT.*Z$/)

    const elements = await page.locator('#recipients [data-snippet]').textContent() ?? ''
    for (const part of [
      /tokens\.keepFresh\(\s+'recipients'/, 'mountElements(sdkOptions(token))', `clientId: '${CLIENT_ID}'`, "clientToken: 'rec_•••'",
      `userId: '${ALICE}'`, "environment: 'SANDBOX'", 'tokens.clear()'
    ]) t.match(elements, part, `the Elements snippet has ${part}`)
    const sdk = await page.locator('#checkout [data-snippet]').textContent() ?? ''
    for (const part of [
      /tokens\.keepFresh\(\s+'checkout'/, '...payment, ...sdkOptions(token)', 'checkout.updateOptions(options)',
      /CheckoutSdk\s+\.loadCheckoutSdk\('#checkout', options\)/, `clientId: '${CLIENT_ID}'`, "clientToken: 'chk_•••'",
      `userId: '${ALICE}'`, "environment: 'SANDBOX'", "type: 'paypal'", 'enableOneClick: true'
    ]) t.match(sdk, part, `the Checkout snippet has ${part}`)
    t.match(await page.locator('#checkout [data-countdown]').textContent(), /Expires in 1[45]:\d\d/, 'a countdown to expiry')
    t.match(await page.locator('#checkout [data-refreshes]').textContent(), /first token chk_•••, expires \d\d:\d\d:\d\d/, 'the tokens handed over are listed')

    await mkdir('test-artifacts', { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    t.ok(existsSync(SCREENSHOT), `screenshot saved to ${SCREENSHOT}`)
    await checkHygiene(t, watched)
  })

  t.test('after logout the broker answers 401 and the helper holds no token', async t => {
    const watched = await openPage(t)
    const { page } = watched
    await page.goto(`${demo.brokerUrl}/`)
    await logIn(page, 'alice')
    const first = await getToken(page, 'recipients')
    const posts = () => watched.urls.filter(url => url === `${demo.brokerUrl}/v1/tokens/recipients`).length
    t.equal(posts(), 1)

    const mintedBefore = minted().length
    await getToken(page, 'recipients')
    t.equal(posts(), 1, 'the demo\'s helper caches: the same token again without a request')
    t.equal(minted().length, mintedBefore)
    t.equal(first.clientToken, 'rec_•••')

    await page.click('#logout')
    await page.locator('#session-status', { hasText: 'Signed out' }).waitFor()
    t.notOk((await page.context().cookies()).some(c => c.name === DEV_COOKIE_NAME), 'the session cookie is gone')
    t.ok(await page.locator('#recipients').isHidden(), 'the token panels are cleared')

    await page.click('#get-recipients')
    await page.locator('#error', { hasText: '401 unauthenticated' }).waitFor()
    t.equal(posts(), 2, 'the helper asked the broker: its cache was empty')
    t.equal(minted().length, mintedBefore, 'nothing minted after logout')
    await checkHygiene(t, watched)
  })

  t.test('a frontend on a listed origin gets a token cross-origin, with the session cookie', async t => {
    const watched = await openPage(t)
    const { page } = watched
    const response = await page.goto(`${demo.frontendUrl}/`)
    t.match(response?.headers()['content-security-policy'], `connect-src 'self' ${demo.brokerUrl}`)
    t.match(await page.textContent('#where'), 'cross-origin')

    await logIn(page, 'alice') // a cross-origin login: the broker's cookie is set through CORS with credentials
    const before = minted().length
    const sent = page.waitForRequest((r: Request) => r.method() === 'POST' && r.url() === `${demo.brokerUrl}/v1/tokens/checkout`)
    const checkout = await getToken(page, 'checkout')
    t.match(checkout, { clientToken: 'chk_•••', userId: ALICE })
    t.same(minted().slice(before).map(m => [m.kind, m.userId]), [['checkout', ALICE]])

    const request = await sent
    const headers = await request.allHeaders()
    t.equal(headers.origin, demo.frontendUrl, 'sent from the frontend origin')
    t.match(headers.cookie, `${DEV_COOKIE_NAME}=`, 'with the broker\'s session cookie')
    t.equal(headers['x-csrf'], '1')
    const answer = await request.response()
    t.equal(answer?.headers()['access-control-allow-origin'], demo.frontendUrl, 'CORS answers the exact origin')
    t.equal(answer?.headers()['access-control-allow-credentials'], 'true')
    await checkHygiene(t, watched)
  })

  t.test('a page on an unlisted origin is blocked by the browser, and nothing is minted', async t => {
    // Same host, another port: same-site, so the session cookie would go along; only CORS stops it.
    const helper = await (await fetch(`${demo.brokerUrl}/v1/client.js`)).text()
    const elsewhere = createServer((req, res) => {
      if (req.url === '/client.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(helper)
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>Not an allowed origin</title>')
    })
    await new Promise<void>(resolve => elsewhere.listen(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise<void>(resolve => {
      elsewhere.close(() => resolve())
      elsewhere.closeAllConnections()
    }))
    const elsewhereUrl = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}`

    const watched = await openPage(t)
    const { page } = watched
    await page.goto(`${demo.brokerUrl}/`)
    await logIn(page, 'alice')
    await page.goto(`${elsewhereUrl}/`)

    const mintedBefore = minted().length
    const callsBefore = emulator.control.calls.total
    const postsBefore = brokerRequests('POST', '/v1/tokens/recipients')
    const preflightsBefore = brokerRequests('OPTIONS', '/v1/tokens/recipients')
    const outcome = await page.evaluate(async (broker) => {
      const { createTokenClient } = await import('/client.js' as string)
      try {
        await createTokenClient({ baseUrl: broker }).recipientsToken()
        return { ok: true }
      } catch (err) {
        const e = err as { name: string, code: string, status: number }
        return { ok: false, name: e.name, code: e.code, status: e.status }
      }
    }, demo.brokerUrl)
    t.same(outcome, { ok: false, name: 'TokenClientError', code: 'network_error', status: 0 }, 'the helper reports the blocked call')
    t.ok(watched.console.some(text => /CORS policy/.test(text)), 'Chromium reports a CORS refusal')
    t.equal(brokerRequests('OPTIONS', '/v1/tokens/recipients'), preflightsBefore + 1, 'the preflight reached the broker')
    t.equal(brokerRequests('POST', '/v1/tokens/recipients'), postsBefore, 'the POST itself was never sent')
    t.equal(minted().length, mintedBefore, 'nothing minted')
    t.equal(emulator.control.calls.total, callsBefore, 'Mangopay was not called')
    await checkHygiene(t, watched)
  })

  t.test('a session with several Mangopay users names one; a session with none is told why', async t => {
    const watched = await openPage(t)
    const { page } = watched
    await page.goto(`${demo.brokerUrl}/`)
    await logIn(page, 'bob')
    t.ok(await page.locator('#mangopay-user').isVisible(), 'Bob picks which Mangopay user')
    await page.selectOption('#mangopay-user', USER_C)
    const before = minted().length
    t.match(await getToken(page, 'recipients'), { userId: USER_C })
    t.same(minted().slice(before).map(m => m.userId), [USER_C], 'the token is for the chosen user')
    t.match(await page.locator('#recipients [data-snippet]').textContent(), `userId: '${USER_C}'`)

    await page.click('#logout')
    await logIn(page, 'carol')
    t.ok(await page.locator('#mangopay-user').isHidden(), 'no choice to make for a single (or no) user')
    await page.click('#get-checkout')
    await page.locator('#error', { hasText: '403 no_mangopay_user' }).waitFor()
    t.equal(minted().length, before + 1, 'nothing minted for Carol')
    await checkHygiene(t, watched)
  })

  t.test('keepFresh hands the panel a new token before expiry, and the panel lists it', async t => {
    const watched = await openPage(t)
    const { page } = watched
    await page.clock.install()
    await page.goto(`${demo.brokerUrl}/`)
    await logIn(page, 'alice')
    await getToken(page, 'checkout')
    const before = minted().length
    const line = page.locator('#checkout [data-countdown]')
    t.match(await line.textContent(), /refreshed automatically 0 times/)

    await page.clock.fastForward('14:05') // 55 s left: inside keepFresh's 60 s margin
    await page.locator('#checkout [data-countdown]', { hasText: 'refreshed automatically 1 time' }).waitFor()
    t.same(minted().slice(before).map(m => [m.kind, m.userId]), [['checkout', ALICE]], 'one new Checkout token')
    t.match(await line.textContent(), /Expires in 1[45]:\d\d/, 'the countdown starts again from the new token')
    const handed = await page.locator('#checkout [data-refreshes] li').allTextContents()
    t.equal(handed.length, 2)
    t.match(handed[1], /refreshed chk_•••, expires/, 'the refresh is listed')
    t.match(await page.locator('#checkout [data-snippet]').textContent(), 'checkout.updateOptions(options)')
    await checkHygiene(t, watched)
  })

  t.test('on a 390 px wide screen the code blocks wrap and nothing scrolls sideways', async t => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 })
    t.teardown(async () => await context.close())
    const page = await context.newPage()
    await page.goto(`${demo.brokerUrl}/`)
    await logIn(page, 'bob') // the longest snippets: a Mangopay user named in the options
    await getToken(page, 'recipients')
    await getToken(page, 'checkout')

    const layout = await page.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      blocks: Array.from(document.querySelectorAll('pre')).map(pre => ({
        hidden: pre.scrollWidth - pre.clientWidth,
        right: pre.getBoundingClientRect().right,
        fontPx: parseFloat(getComputedStyle(pre).fontSize)
      }))
    }))
    t.equal(layout.page, 390, 'the page is no wider than the screen')
    t.equal(layout.blocks.length, 4)
    for (const block of layout.blocks) {
      t.equal(block.hidden, 0, 'no code hidden behind a sideways scroll')
      t.ok(block.right <= 390, 'the block fits the screen')
      t.ok(block.fontPx >= 12, `readable text (${block.fontPx} px)`)
    }
    await mkdir('test-artifacts', { recursive: true })
    await page.screenshot({ path: 'test-artifacts/demo-390.png', fullPage: true })
  })
}
