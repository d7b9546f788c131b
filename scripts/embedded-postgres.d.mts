// Types of scripts/embedded-postgres.mjs (plain JavaScript, so shell scripts can run it with node alone).
export interface EmbeddedInstall {
  binDir: string
  shareDir: string
  pkgLibDir: string
  version: number
}
export const CACHE_DIR: string
export const VERSIONS: Record<number, string>
export const SUPPORTED_MAJORS: number[]
export const DEFAULT_MAJOR: number
export function platformPackage(platform?: string, arch?: string): string
export function buildDir(major: number): string
export function embeddedInstall(major: number): EmbeddedInstall
export function isInstalled(major: number): boolean
export function installCommand(major: number): string
export function ensureEmbedded(major: number, log?: (line: string) => void): EmbeddedInstall
