import { LRUCache } from 'lru-cache'

/**
 * The secret values in use (SPEC §8 "Logs"): every log line is scrubbed of them, whatever key or
 * free text (Mangopay's own error message included) carries them.
 */

const CENSOR = '[redacted]'
/** Shorter tokens are searched for like credentials rather than looked up. */
const MIN_TOKEN_LENGTH = 16
// How a token stands in text. Most are base64url or hex, and a path's `/` must end them; one with
// `.`, `~`, `+` or `/` (a JWT, standard base64) is found among RFC 6750's b64token runs instead.
// The lookbehind starts a match only where a run starts: inside a short run, no retry per character.
const URL_SAFE_RUN = /(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{16,}/g
const B64TOKEN_RUN = /(?<![A-Za-z0-9._~+/-])[A-Za-z0-9._~+/-]{16,}=*/g
const URL_SAFE = /^[A-Za-z0-9_-]+$/
const BACKSLASH = 92
const EQUALS = 61
const BEARERS_SEARCHED = 4
const TOKENS_REMEMBERED = 20_000

/** How a string looks inside a JSON line (quotes, backslashes and control characters escaped). */
function asLogged (value: string): string {
  return JSON.stringify(value).slice(1, -1)
}

export class LiveSecrets {
  /** API keys and Basic values (every one used since start: a rotation adds two) and the latest bearers: searched anywhere. */
  readonly #credentials = new Set<string>()
  #bearers: string[] = []
  #searched: string[] = []
  /** Minted tokens, too many to search for: each run of token characters is looked up instead. */
  readonly #tokens = new LRUCache<string, true>({ max: TOKENS_REMEMBERED })
  /** The runs to look up: those of the characters the tokens seen so far are made of. */
  #runs: RegExp[] = []

  /** An API key or a Basic value. */
  credential (value: string): void {
    if (value === '' || this.#credentials.has(value)) return
    this.#credentials.add(value)
    this.#update()
  }

  /** The bearer in use; the previous few stay searched for. */
  bearer (value: string): void {
    if (value === '' || this.#bearers[0] === value) return
    this.#bearers = [value, ...this.#bearers.filter(b => b !== value)].slice(0, BEARERS_SEARCHED)
    this.#update()
    this.token(value)
  }

  /** A token handed to a browser. */
  token (value: string): void {
    if (value.length < MIN_TOKEN_LENGTH) {
      this.credential(value)
      return
    }
    this.#tokens.set(value, true)
    const runs = URL_SAFE.test(value) ? URL_SAFE_RUN : B64TOKEN_RUN
    if (!this.#runs.includes(runs)) this.#runs = [...this.#runs, runs]
  }

  #update (): void {
    const values = [...this.#credentials, ...this.#bearers]
    this.#searched = [...new Set([...values, ...values.map(asLogged)])]
  }

  /** `line` with every live secret replaced by `[redacted]`. */
  scrub (line: string): string {
    let out = line
    for (const secret of this.#searched) {
      if (out.includes(secret)) out = out.replaceAll(secret, CENSOR)
    }
    let found: string[] | undefined
    for (const runs of this.#runs) {
      runs.lastIndex = 0
      for (let match = runs.exec(out); match !== null; match = runs.exec(out)) {
        const run = match[0]
        if (this.#isToken(run)) (found ??= []).push(run)
        // After an escape (`\n`, `\t`…) the run starts with the escape's letter.
        else if (match.index > 0 && out.charCodeAt(match.index - 1) === BACKSLASH && this.#isToken(run.slice(1))) (found ??= []).push(run.slice(1))
      }
    }
    if (found === undefined) return out
    for (const token of found) out = out.replaceAll(token, CENSOR)
    return out
  }

  #isToken (run: string): boolean {
    if (this.#tokens.has(run)) return true
    // A padding-free token followed by `=` in text.
    return run.charCodeAt(run.length - 1) === EQUALS && this.#tokens.has(run.replace(/=+$/, ''))
  }
}
