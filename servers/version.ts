/**
 * The herd's version: one constant for `--version`, the start-up line and build info.
 *
 * @module
 */

/** The herd's version (semver). */
export const VERSION = "0.14.0";
