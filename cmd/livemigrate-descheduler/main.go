// Command livemigrate-descheduler runs the LiveMigration controller and its
// validating webhook against the Karmada control plane.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/livemigrate/livemigrate/descheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewCommand(ctrl.SetupSignalHandler())))
}
