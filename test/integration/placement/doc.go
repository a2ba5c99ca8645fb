// Package placement checks, in the lab, that livemigrate-scheduler places a
// stateful workload where the Capacity and Latency plugins say it should —
// by free capacity and by RTT measured by the probers through the lab's
// simulated network — and that the stock karmada-scheduler, given the same
// workload in the same lab, does not.
package placement
