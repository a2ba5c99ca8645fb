// Command pause is the infra container process of the pause image that
// hack/real-node.sh pushes to the lab registry for CRI-O (pause_image): it
// waits for SIGTERM or SIGINT and exits 0, like registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
