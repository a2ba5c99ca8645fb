// Package rebalance is the end-to-end test of the load rebalancing trigger
// in the lab (root): member1 is loaded above the high band by pods that are
// not opted in (kwok pods with CPU requests), member2 and member3 are below
// the low band. In DryRun the descheduler moves nothing and reports the
// plan kubectl livemigrate plan --rebalance prints; in Auto it moves the
// opted-in StatefulSet (lab app writing to its volume) live to the emptier
// member within one round, with the invariants of a manual move; nothing
// moves in the next three rounds; a workload with livemigrate.io/rebalance:
// "false" never moves.
package rebalance
