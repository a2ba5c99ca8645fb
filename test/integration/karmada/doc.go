// Package karmada holds regression tests, against a real Karmada in the lab,
// of the Karmada behaviour the live-migration design depends on. A Karmada
// upgrade that breaks one of them breaks live migration.
package karmada
