// Command kubectl-livemigrate is the kubectl plugin for live migrations
// (`kubectl livemigrate move|status|abort|plan|doctor`).
package main

import (
	"fmt"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/livemigrate/livemigrate/descheduler/kubectl"
)

func main() {
	cmd := kubectl.NewCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
