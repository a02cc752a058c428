# syntax=docker/dockerfile:1
# The api, worker and controller images, from one build. Pick one with its target:
#   docker build --target api -t conveyor-api .
#   docker build --target worker -t conveyor-worker .
#   docker build --target controller -t conveyor-controller .
# Each runs the compiled JavaScript in dist/ with production dependencies only, as uid 1000, with the V8 flags of
# scripts/node-flags.ts on its command line (NODE_OPTIONS does not accept them all).

# ---- build: all dependencies, TypeScript compiled to dist/
FROM node:24-slim AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: the `node` devDependency's install script would download a second Node 24 binary
# (126 MB) that this image already has; nothing the build uses needs an install script.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY services ./services
RUN npm run build

# ---- runtime: production dependencies (no `node` package, no TypeScript, no test tools) and dist/
FROM node:24-slim AS runtime
ENV NODE_ENV=production \
    NODE_OPTIONS="--enable-source-maps"
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf /root/.npm /tmp/*
COPY --from=build /src/dist ./dist
# The image's `node` user; numeric, so that Kubernetes can check runAsNonRoot. The files stay root-owned,
# read-only to the service.
USER 1000:1000

FROM runtime AS controller
EXPOSE 9091
CMD ["node", "--max-semi-space-size=4", "--heap-growing-percent=100", "dist/services/controller/src/main.js"]

FROM runtime AS worker
EXPOSE 9091
CMD ["node", "--max-semi-space-size=4", "--heap-growing-percent=100", "dist/services/worker/src/main.js"]

# Last, so that a plain `docker build .` gives the API.
FROM runtime AS api
EXPOSE 8000
CMD ["node", "--max-semi-space-size=4", "--heap-growing-percent=100", "dist/services/api/src/main.js"]
