// Command livemigrate-scheduler is karmada-scheduler with the livemigrate
// Capacity and Latency plugins. See plugins/capacity/README.md and
// plugins/latency/README.md.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/livemigrate/livemigrate/cmd/livemigrate-scheduler/app"
)

func main() {
	ctx := ctrl.SetupSignalHandler()
	command := app.NewSchedulerCommand(ctx)
	code := cli.Run(command)
	logs.FlushLogs()
	os.Exit(code)
}
