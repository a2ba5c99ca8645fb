// Command livemigrate-prober measures round-trip times from its member
// cluster to peer clusters and origins and publishes them as the cluster's
// ClusterLatency in the Karmada control plane. See plugins/latency/README.md.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/livemigrate/livemigrate/plugins/latency/prober"
)

func main() {
	ctx := ctrl.SetupSignalHandler()
	os.Exit(cli.Run(prober.NewCommand(ctx)))
}
