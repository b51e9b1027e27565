# syntax=docker/dockerfile:1
# Same Node major as the project (package.json engines, CI).
ARG NODE_IMAGE=node:20-bookworm-slim

# Build: compile better-sqlite3 for this Node and the TypeScript sources, then drop dev dependencies.
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY gateway ./gateway
# `npm ci` runs the prepare script, which builds dist/.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

# Runtime: only what `govgate serve` needs, as an unprivileged user.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY config ./config
# Inside a container the gateway must listen on every interface to be reachable through -p.
RUN sed -i 's/^  host: 127.0.0.1/  host: 0.0.0.0/' config/gateway.yaml \
 && mkdir -p data && chown -R node:node /app/data
USER node
VOLUME ["/app/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node is PID 1 and handles SIGTERM/SIGINT itself: it drains, flushes the audit log and exits 0.
ENTRYPOINT ["node", "dist/gateway/cli/main.js"]
CMD ["serve"]
