// Package arch holds no code: its test checks the import rules of
// docs/ARCHITECTURE.md ("Packages: one job each, and what each may import")
// against what the packages import.
package arch
