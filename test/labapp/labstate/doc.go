// Package labstate is the lab app's state: a counter and a memory region it
// keeps dirtying, and the log of counter values on its volume. It is the
// stand-in for a stateful workload whose memory CRIU would checkpoint.
//
// The region is one anonymous mapping: a header page (magic, counter, the
// value of a tick in flight, geometry) followed by data pages. Tick c writes
// the value c into every word of pages (c*K+k) mod N for k < K, appends "c"
// to the log, then commits counter = c. The mapping's address is published in
// a layout file, so that the node runtime can read the region of the frozen
// process from /proc/<pid>/mem, as CRIU reads a frozen task's memory, and a
// restored process loads it back and finishes the tick that was in flight.
// Verify checks that memory and log agree and that no value was skipped or
// repeated.
package labstate
