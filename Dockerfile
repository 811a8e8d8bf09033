# syntax=docker/dockerfile:1
# Build stage: compile TypeScript and build the browser helper with the dev dependencies.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/client/package.json ./packages/client/
# The root's `prepare` would build the helper before its sources are here: `npm run build` does.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY packages/client ./packages/client
RUN npm run build

# Runtime stage: production dependencies, compiled JavaScript and the built helper only, as a
# non-root user. The root's `prepare` (building the helper) needs the dev dependencies, and no
# production dependency has an install script (test/deploy.test.ts checks): hence --ignore-scripts.
FROM node:24-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/client/package.json ./packages/client/
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# GET /v1/client.js serves the helper package's entry, found through its workspace link.
COPY --from=build /app/packages/client/dist/index.js ./packages/client/dist/index.js
USER node
EXPOSE 3000
# METRICS_PORT: /metrics and the detailed /readyz, for the scraper only.
EXPOSE 9464
# Healthy means ready (/readyz on HOST:PORT), what a load balancer probing the public port sees.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["node", "dist/healthcheck.js"]
# The same V8 flags as `npm start` (test/deploy.test.ts keeps them in step; the benchmark runs
# the broker with them): a 64 MB young generation, so per-request objects die young instead of
# being promoted and collected by costlier old-generation GCs (README, Benchmark).
CMD ["node", "--max-semi-space-size=64", "dist/server.js"]
