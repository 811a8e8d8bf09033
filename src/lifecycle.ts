/** Where the process is in its life; flipped by SIGTERM/SIGINT (server.ts) or `app.close()`. */
export interface Lifecycle {
  /** Readiness is 503 and answers close their connections. */
  shuttingDown: boolean
  /** `app.close()` has begun: a token request still reaching a route (pipelined) mints nothing. */
  closing: boolean
}
