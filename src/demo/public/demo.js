/* global document, location, fetch, setInterval, clearInterval, Option */
// The demo page's script. The same page is served on two origins: by the broker itself
// (data-broker is empty: same origin) and by a separate "frontend" server, where every call
// crosses origins: CORS with credentials, the session cookie and X-CSRF: 1.

const { role, broker, frontend } = document.body.dataset
const brokerOrigin = broker === '' ? location.origin : broker
const { createTokenClient, sdkOptions, TokenClientError } = await import(`${broker}/v1/client.js`)

// cache: a remount reuses a token until 30 s before it expires; retry: one retry after a 429/503.
const tokens = createTokenClient({ baseUrl: broker, cache: true, retry: true })

const KINDS = ['recipients', 'checkout']
const $ = (id) => document.getElementById(id)

let signedIn
// Per kind: the keepFresh stop function, the countdown timer, the tokens handed over so far.
const panels = {}

/** Demo-only routes (login, users): plain fetch, same cookie and header rules as the tokens. */
async function brokerCall (path, body) {
  const response = await fetch(`${broker}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    credentials: 'include',
    headers: body === undefined ? {} : { 'content-type': 'application/json', 'x-csrf': '1' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const answer = await response.json().catch(() => undefined)
  if (!response.ok) throw new Error(answer?.detail ?? `The broker answered ${response.status}.`)
  return answer
}

function mask (token) {
  return `${token.slice(0, 4)}•••`
}

function showError (err) {
  const box = $('error')
  if (err === undefined) {
    box.hidden = true
    box.textContent = ''
    return
  }
  box.hidden = false
  box.textContent = err instanceof TokenClientError
    ? `${err.status || 'no answer'} ${err.code}: ${err.detail ?? err.message}${err.requestId ? ` (request ${err.requestId})` : ''}`
    : String(err.message ?? err)
}

function selectedMangopayUser () {
  return signedIn?.mangopayUserIds.length > 1 ? $('mangopay-user').value : undefined
}

const time = (ms) => new Date(ms).toISOString().slice(11, 19)

/** The page's own code, in lines short enough to read on a phone. */
function clientLines () {
  return `import {
  createTokenClient, sdkOptions
} from 'mangopay-token-broker-client'
// plain page: import() the same module
// from ${brokerOrigin}/v1/client.js

const tokens = createTokenClient({
  baseUrl: '${brokerOrigin}'
})`
}

function keepOptions (userId) {
  return userId
    ? `{
    userId: '${userId}',
    onError: showError
  }`
    : '{ onError: showError }'
}

/** What sdkOptions(token) gives now (the token masked), as a comment. */
function currentFields (token) {
  const fields = { ...sdkOptions(token), clientToken: mask(token.clientToken) }
  return ['// sdkOptions(token) is now:', ...Object.entries(fields).map(([name, value]) => `//   ${name}: '${value}'`)].join('\n')
}

function elementsSnippet (token, userId) {
  return `${clientLines()}

// Mangopay Elements takes the token as
// its clientToken; keepFresh hands a new
// one before each expires.
const stop = tokens.keepFresh(
  'recipients',
  (token) => {
    mountElements(sdkOptions(token))
  },
  ${keepOptions(userId)}
)

${currentFields(token)}

// mountElements: your code, after
// docs.mangopay.com/sdks/elements
// Logout or user switch: tokens.clear()`
}

function checkoutSnippet (token, userId) {
  return `import { CheckoutSdk }
  from '@mangopay/checkout-sdk'
${clientLines()}

const payment = {
  profilingMerchantId: '<your id>',
  amount: { value: 1000, currency: 'EUR' },
  paymentMethods: [{
    type: 'paypal',
    options: {
      merchantId: '<PayPal merchant id>',
      // offers "save PayPal for next time"
      enableOneClick: true,
      onCreatePayment: (ref, oneClick) =>
        yourBackend.payIn(ref, oneClick)
    }
  }]
}

let checkout
const stop = tokens.keepFresh(
  'checkout',
  async (token) => {
    // updateOptions replaces: pass them all
    const options = {
      ...payment, ...sdkOptions(token)
    }
    if (checkout) {
      checkout.updateOptions(options)
    } else {
      checkout = await CheckoutSdk
        .loadCheckoutSdk('#checkout', options)
    }
  },
  ${keepOptions(userId)}
)

${currentFields(token)}`
}

/** The countdown only shows time; keepFresh does the refreshing. */
function startCountdown (kind, token) {
  const panel = panels[kind]
  clearInterval(panel.timer)
  const line = document.querySelector(`#${kind} [data-countdown]`)
  const deadline = Date.now() + token.expiresIn * 1000
  const refreshes = panel.handed.length - 1
  const tick = () => {
    const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000))
    const clock = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`
    line.textContent = `Expires in ${clock} (at ${token.expiresAt}) · refreshed automatically ${refreshes} time${refreshes === 1 ? '' : 's'}`
    line.classList.toggle('soon', left <= 60)
  }
  panel.timer = setInterval(tick, 1000)
  tick()
}

/** onToken: every token keepFresh hands over, the first and each refresh. */
function render (kind, token, userId) {
  const element = $(kind)
  const panel = panels[kind]
  panel.handed.push({ at: Date.now(), token: mask(token.clientToken), expiresAt: Date.now() + token.expiresIn * 1000 })
  element.querySelector('[data-response]').textContent = JSON.stringify({ ...token, clientToken: mask(token.clientToken) }, null, 2)
  element.querySelector('[data-snippet]').textContent = kind === 'recipients' ? elementsSnippet(token, userId) : checkoutSnippet(token, userId)
  element.querySelector('[data-refreshes]').replaceChildren(...panel.handed.map((entry, i) => {
    const item = document.createElement('li')
    item.textContent = `${time(entry.at)} ${i === 0 ? 'first token' : 'refreshed'} ${entry.token}, expires ${time(entry.expiresAt)}`
    return item
  }))
  element.hidden = false
  // Counts renders (the browser tests wait on it).
  element.dataset.renders = String(Number(element.dataset.renders ?? 0) + 1)
  startCountdown(kind, token)
}

function unmount (kind) {
  const panel = panels[kind]
  if (panel === undefined) return
  panel.stop()
  clearInterval(panel.timer)
  delete panels[kind]
}

/** Mounts a panel through keepFresh, as a page would mount the SDK; a second click remounts. */
function mount (kind) {
  showError(undefined)
  unmount(kind)
  const userId = selectedMangopayUser()
  const panel = { handed: [] }
  panels[kind] = panel
  panel.stop = tokens.keepFresh(kind, (token) => render(kind, token, userId), {
    userId,
    onError: (err, { stopped }) => {
      // The page called clear() itself (logout, user switch): nothing to tell.
      if (err.code === 'cleared') return
      showError(err)
      if (stopped) unmount(kind)
    }
  })
}

function showSession (user) {
  signedIn = user
  $('login-form').hidden = user !== undefined
  $('signed-in').hidden = user === undefined
  for (const kind of KINDS) {
    unmount(kind)
    $(kind).hidden = true
  }
  if (user === undefined) return
  $('who').textContent = user.name
  const choice = $('mangopay-user')
  choice.replaceChildren(...user.mangopayUserIds.map((id) => new Option(id, id)))
  $('mangopay-user-row').hidden = user.mangopayUserIds.length < 2
}

async function logIn (event) {
  event.preventDefault()
  showError(undefined)
  // A user switch: nothing fetched for the previous session may be reused.
  tokens.clear()
  try {
    const { user } = await brokerCall('/v1/dev/login', { user: $('user-select').value })
    showSession(user)
    $('session-status').textContent = `Session cookie set by ${brokerOrigin} (HttpOnly: this page cannot read it).`
  } catch (err) {
    showError(err)
  }
}

async function logOut () {
  showError(undefined)
  try {
    await brokerCall('/v1/dev/logout', {})
  } catch (err) {
    showError(err)
  }
  // Logout: drop every cached token, cancel requests in flight, stop every keepFresh.
  tokens.clear()
  showSession(undefined)
  $('session-status').textContent = 'Signed out: the session cookie is gone and the helper holds no token.'
}

function describeOrigins () {
  const where = $('where')
  if (role === 'frontend') {
    where.textContent = `This is a separate frontend on ${location.origin}. It calls the broker on ${brokerOrigin} cross-origin: CORS (exact allow-list, credentials), the broker's session cookie and X-CSRF: 1.`
    return
  }
  where.append(`Served by the broker on ${location.origin}. The same page on a second origin, calling the broker cross-origin: `)
  const link = document.createElement('a')
  link.href = frontend
  link.textContent = frontend
  where.append(link)
}

async function loadUsers () {
  const { users } = await brokerCall('/v1/dev/users')
  $('user-select').replaceChildren(...users.map((user) => new Option(user.name, user.id)))
}

describeOrigins()
$('login-form').addEventListener('submit', logIn)
$('logout').addEventListener('click', logOut)
for (const kind of KINDS) $(`get-${kind}`).addEventListener('click', () => mount(kind))
// Another Mangopay user: what is mounted follows it.
$('mangopay-user').addEventListener('change', () => {
  for (const kind of KINDS) if (panels[kind] !== undefined) mount(kind)
})
try {
  await loadUsers()
  document.body.dataset.ready = 'true'
} catch (err) {
  showError(err)
}
