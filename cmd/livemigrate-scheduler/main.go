package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	controllerruntime "sigs.k8s.io/controller-runtime"

	"github.com/karmada-io/karmada/cmd/scheduler/app"
)

func main() {
	ctx := controllerruntime.SetupSignalHandler()
	command := app.NewSchedulerCommand(ctx)
	code := cli.Run(command)
	logs.FlushLogs()
	os.Exit(code)
}
