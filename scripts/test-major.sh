#!/usr/bin/env bash
# The core suites against one PostgreSQL major (14–18), on Debian's server of that major when
# installed, else on the npm build: `npm run test:major -- 17`. .ci/run and the CI matrix run it
# for every supported major.
#
# PGXU_SERVER_ONLY=1: this run checks the server. Tests that need client programs or Debian
# extension packages the machine lacks for that major are not part of it (the main run has them);
# they are listed by name at the end, never reported as skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
major=${1:?usage: scripts/test-major.sh <14|15|16|17|18>}
export PG_MAJOR=$major PGXU_SERVER_ONLY=1
bash scripts/install-test-deps.sh
exec node --experimental-vm-modules --no-warnings ./node_modules/jest/bin/jest.js --runInBand \
  __tests__/dry-run.test.ts __tests__/execute.test.ts __tests__/verify.test.ts __tests__/run.test.ts \
  __tests__/rollback-downgrade.test.ts __tests__/fleet.test.ts
