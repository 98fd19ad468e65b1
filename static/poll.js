// poll.js: the long-poll loop. It resumes from its cursor after errors, backing off
// exponentially (capped), and reports whether the connection is up.

import { ApiError } from './api.js';

const POLL_TIMEOUT = 25; // seconds the server may hold a poll open
const MAX_BACKOFF = 30000; // ms
const BATCH = 100; // the server returns at most this many events per poll

// Poller calls poll(cursor, timeout, signal) in a loop.
// onEvents(events, more) handles one batch and returns false to stop;
// onState('online'|'reconnecting', wasDown) follows the connection;
// onFatal(err) gets a 401, after which the loop has stopped.
export class Poller {
  constructor({ poll, onEvents, onState, onFatal, isCaughtUp }) {
    Object.assign(this, { poll, onEvents, onState, onFatal, isCaughtUp });
    this.cursor = 0;
    this.running = false;
    this.ctrl = null;
    this.wakeUp = null;
    this.onOnline = () => this.wake();
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.ctrl = new AbortController();
    window.addEventListener('online', this.onOnline);
    this.loop();
  }

  stop() {
    this.running = false;
    window.removeEventListener('online', this.onOnline);
    if (this.ctrl) this.ctrl.abort();
    this.wake();
  }

  wake() {
    if (this.wakeUp) this.wakeUp();
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(t);
        if (self.wakeUp === done) self.wakeUp = null;
        resolve();
      }
      this.wakeUp = done;
    });
  }

  async loop() {
    let failures = 0;
    let quick = 0;
    while (this.running) {
      // Catch up at once (timeout=0) until a short batch says nothing more is
      // waiting; after an error too, so that the page knows at once that the
      // server is back (a long poll could wait its whole timeout to say so).
      const timeout = this.isCaughtUp() && failures === 0 ? POLL_TIMEOUT : 0;
      const started = Date.now();
      let res;
      try {
        res = await this.poll(this.cursor, timeout, this.ctrl.signal);
      } catch (e) {
        if (!this.running) return;
        if (e instanceof ApiError && e.status === 401) {
          this.stop();
          this.onFatal(e);
          return;
        }
        failures++;
        this.onState('reconnecting', true);
        const base = Math.min(MAX_BACKOFF, 1000 * 2 ** (failures - 1));
        await this.sleep(base * (0.75 + Math.random() * 0.5));
        continue;
      }
      if (!this.running) return;
      const wasDown = failures > 0;
      failures = 0;
      this.onState('online', wasDown);

      const events = Array.isArray(res && res.events) ? res.events : [];
      const goOn = this.onEvents(events, events.length >= BATCH);
      if (res && Number.isInteger(res.cursor) && res.cursor > this.cursor) this.cursor = res.cursor;
      if (goOn === false) {
        this.stop();
        return;
      }

      // An empty answer long before the timeout means another poll of this session
      // (another tab) took over, or the server is stopping: wait a little, growing.
      if (timeout > 0 && events.length === 0 && Date.now() - started < (timeout - 5) * 1000) {
        quick++;
        await this.sleep(Math.min(10000, 250 * 2 ** quick));
      } else {
        quick = 0;
      }
    }
  }
}
