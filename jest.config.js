// ESM + ts-jest, as actions/setup-node v7 and actions/typescript-action do.
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  resolver: 'ts-jest-resolver',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json', useESM: true }]
  },
  testMatch: ['<rootDir>/__tests__/**/*.test.ts'],
  testTimeout: 120000,
  reporters: ['default', '<rootDir>/__tests__/harness/skip-reporter.cjs'],
  verbose: false
}
