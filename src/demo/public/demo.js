/* global document, location, fetch, setInterval, clearInterval, Option */
// The demo page's script. The same page is served on two origins: by the broker itself
// (data-broker is empty: same origin) and by a separate "frontend" server, where every call
// crosses origins: CORS with credentials, the session cookie and X-CSRF: 1.

const { role, broker, frontend } = document.body.dataset
const brokerOrigin = broker === '' ? location.origin : broker
const { createTokenClient, TokenClientError } = await import(`${broker}/v1/client.js`)

// cache: a token is reused until 30 s before it expires; retry: one retry after a 429/503.
const tokens = createTokenClient({ baseUrl: broker, cache: true, retry: true })

const REFRESH_BEFORE_S = 30
const KINDS = ['recipients', 'checkout']
const $ = (id) => document.getElementById(id)

let signedIn
const countdowns = {}

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

/** How the page would ask: the same call, with the user id when the session has several. */
function tokenCall (method, userId) {
  return `const token = await tokens.${method}(${userId ? `{ userId: '${userId}' }` : ''})`
}

/** The four fields both Mangopay SDKs take, as the page would pass them. */
function sdkFields (token, more = false) {
  return `  clientId: '${token.clientId}', // token.clientId
  clientToken: '${mask(token.clientToken)}', // token.clientToken, until ${token.expiresAt}
  userId: '${token.userId}', // token.userId
  environment: '${token.environment}'${more ? ',' : ''} // token.environment`
}

function elementsSnippet (token, userId) {
  return `import { createTokenClient } from 'mangopay-token-broker-client' // or ${brokerOrigin}/v1/client.js

const tokens = createTokenClient({ baseUrl: '${brokerOrigin}', cache: true })
${tokenCall('recipientsToken', userId)}

// Mangopay Elements (Recipients) is initialised with the token as its clientToken:
const elementsOptions = {
${sdkFields(token)}
}
// Hand elementsOptions to the Recipients component (docs.mangopay.com/sdks/elements).
// Get the token when the form is shown; after logout call tokens.clear().`
}

function checkoutSnippet (token, userId) {
  return `import { CheckoutSdk } from '@mangopay/checkout-sdk' // or the script from https://checkout.mangopay.com
import { createTokenClient } from 'mangopay-token-broker-client'

const tokens = createTokenClient({ baseUrl: '${brokerOrigin}', cache: true })
${tokenCall('checkoutToken', userId)}

const options = {
${sdkFields(token, true)}
  profilingMerchantId: '<your profiling merchant id>',
  amount: { value: 1000, currency: 'EUR' },
  paymentMethods: [{
    type: 'paypal',
    options: {
      merchantId: '<your PayPal merchant id>',
      enableOneClick: true, // offers "save PayPal for one-click payments"
      onCreatePayment: (profilingAttemptReference, enableOneClick) =>
        yourBackend.createPayPalPayIn({ profilingAttemptReference, enableOneClick })
    }
  }]
}
const checkout = await CheckoutSdk.loadCheckoutSdk('#checkout', options)

// The token lasts 15 minutes: before it runs out, hand the SDK a fresh one.
const fresh = await tokens.checkoutToken(${userId ? `{ userId: '${userId}', forceRefresh: true }` : '{ forceRefresh: true }'})
checkout.updateOptions({ ...options, clientToken: fresh.clientToken })`
}

function stopCountdown (kind) {
  clearInterval(countdowns[kind]?.timer)
  delete countdowns[kind]
}

/** Counts down to expiry and, REFRESH_BEFORE_S before it, asks the helper for a new token. */
function startCountdown (kind, token, refreshes) {
  stopCountdown(kind)
  const line = document.querySelector(`#${kind} [data-countdown]`)
  const deadline = Date.now() + token.expiresIn * 1000
  const countdown = { refreshing: false }
  const tick = () => {
    const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000))
    const clock = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`
    line.textContent = `Expires in ${clock} (at ${token.expiresAt}) · refreshed automatically ${refreshes} time${refreshes === 1 ? '' : 's'}`
    line.classList.toggle('soon', left <= REFRESH_BEFORE_S)
    if (left <= REFRESH_BEFORE_S && !countdown.refreshing) {
      countdown.refreshing = true
      getToken(kind, { refreshes: refreshes + 1 })
    }
  }
  countdown.timer = setInterval(tick, 1000)
  countdowns[kind] = countdown
  tick()
}

function render (kind, token, refreshes) {
  const panel = $(kind)
  const userId = selectedMangopayUser()
  panel.querySelector('[data-response]').textContent = JSON.stringify({ ...token, clientToken: mask(token.clientToken) }, null, 2)
  panel.querySelector('[data-snippet]').textContent = kind === 'recipients' ? elementsSnippet(token, userId) : checkoutSnippet(token, userId)
  panel.hidden = false
  // Counts renders, cached answers included (the browser tests wait on it).
  panel.dataset.renders = String(Number(panel.dataset.renders ?? 0) + 1)
  startCountdown(kind, token, refreshes)
}

async function getToken (kind, { refreshes = 0 } = {}) {
  showError(undefined)
  const options = { userId: selectedMangopayUser(), forceRefresh: refreshes > 0 }
  try {
    const token = kind === 'recipients' ? await tokens.recipientsToken(options) : await tokens.checkoutToken(options)
    render(kind, token, refreshes)
  } catch (err) {
    stopCountdown(kind)
    showError(err)
  }
}

function showSession (user) {
  signedIn = user
  $('login-form').hidden = user !== undefined
  $('signed-in').hidden = user === undefined
  for (const kind of KINDS) {
    stopCountdown(kind)
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
  // Logout: drop every cached token and cancel requests in flight.
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
for (const kind of KINDS) $(`get-${kind}`).addEventListener('click', () => getToken(kind))
try {
  await loadUsers()
  document.body.dataset.ready = 'true'
} catch (err) {
  showError(err)
}
