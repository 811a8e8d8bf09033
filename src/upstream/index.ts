/** Calls out of the broker (Mangopay, the session endpoint): pools, deadlines, bounded reads. */
export { Deadline, sleepWithin, withDeadline, withinDeadline } from './deadline.js'
export { CONNECT_TIMEOUT_CAP_MS, connectTimeoutMs, createPool, type PoolOptions } from './pool.js'
export { readBounded } from './read-bounded.js'
export { FailureCauseLog, hostPort, rootCode, type FailureCause } from './failure-cause.js'
