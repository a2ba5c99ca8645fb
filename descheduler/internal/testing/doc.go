// Package testing holds fluent builders and a scheme for the descheduler's
// unit tests. Production code must never import it.
package testing
