# syntax=docker/dockerfile:1
# The pipeline as an image: compiled code (dist/) and production dependencies only, run as the
# unprivileged `node` user under tini. Build: docker build -t atlas-pipeline .
# Run: docker compose up (docker-compose.yml), or see README "Container image".

ARG NODE_IMAGE=node:24-bookworm-slim

# dist/: the protobuf code generated from the .proto contract, then tsc and the run-time assets.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY pipeline ./pipeline
COPY stages ./stages
COPY ops/cli ./ops/cli
COPY ops/dist.ts ./ops/
COPY clients/typescript ./clients/typescript
RUN bash proto/generate.sh && node ops/dist.ts && chmod +x dist/ops/cli/atlas.js

# Production dependencies alone, from the lockfile; no install scripts run (none is needed).
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
# tini as PID 1 forwards SIGTERM to node (graceful drain, stop_grace_period) and reaps zombies.
# npm, npx, corepack and yarn are not needed to run and are the bulk of what the base adds.
# hadolint ignore=DL3008
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/* \
  && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn-v* \
  && rm -f /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg \
  && ln -s /app/dist/ops/cli/atlas.js /usr/local/bin/atlas
ENV NODE_ENV=production
WORKDIR /app
# Owned by root, read-only to the user the pipeline runs as.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json LICENSE ./
# the image's `node` user, by number so that Kubernetes runAsNonRoot can verify it
USER 1000:1000
EXPOSE 8080
# /ready is the whole pipeline's readiness; with ATLAS_AUTH_TOKENS it needs ATLAS_HEALTH_TOKEN.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "dist/ops/cli/healthcheck.js"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/ops/cli/atlas.js"]
CMD ["up"]
