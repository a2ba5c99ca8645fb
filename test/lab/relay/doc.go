// Package relay is a user-space TCP relay that places a simulated wide-area
// link between two endpoints of the lab: every byte that enters one side
// leaves the other side after a configured one-way delay, paced to a
// configured bandwidth, independently in each direction. The bandwidth is
// per connection, unless the direction's Link names a Wire: the connections
// of every relay sharing that Wire then share its bandwidth, as transfers
// over one physical link do.
//
// The lab machines have no netem qdisc, so this is how member clusters get a
// network position: latency probes and data transfers between members go
// through relays instead of connecting to each other directly.
//
// A relay must never reorder or drop bytes, and never deliver a byte earlier
// than its arrival time plus the delay. It is a test fixture: it holds
// everything in memory and does not try to model loss or jitter.
package relay
