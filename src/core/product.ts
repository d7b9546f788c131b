/** The product's name and version; a test keeps them equal to package.json. */
export const PRODUCT = { name: 'pg-extension-upgrade', version: '0.1.0' } as const
