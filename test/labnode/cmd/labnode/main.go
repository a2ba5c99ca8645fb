// Command labnode runs the lab's node runtime for one kwok node (see package
// labnode), or with "registry" the lab's OCI registry.
//
//	labnode --kubeconfig=member1.kubeconfig --node-name=member1-node-0 --root=/tmp/lab/nodes/member1-node-0 \
//	        --cgroup-parent=livemigrate-lab/member1-node-0 --labapp=bin/labapp --listen=127.0.0.1:0
//	labnode registry --listen=127.0.0.1:5000 --dir=/tmp/lab/registry
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/livemigrate/livemigrate/agent/checkpointimage"
	"github.com/livemigrate/livemigrate/test/labnode"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "registry" {
		err = registry(ctx, os.Args[2:])
	} else {
		err = node(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "labnode:", err)
		os.Exit(1)
	}
}

func registry(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("registry", pflag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "Address to serve the registry on (plain HTTP).")
	dir := fs.String("dir", "", "Directory for blobs; in memory when empty.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := labnode.StartRegistry(*listen, *dir)
	if err != nil {
		return err
	}
	fmt.Println(r.Host)
	<-ctx.Done()
	return r.Close()
}

func node(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("labnode", pflag.ContinueOnError)
	var cfg labnode.Config
	kubeconfig := fs.String("kubeconfig", "", "Kubeconfig of the member cluster.")
	fs.StringVar(&cfg.NodeName, "node-name", "", "The kwok node this runtime serves.")
	fs.StringVar(&cfg.Root, "root", "", "Node root: checkpoints/ (the kubelet checkpoint directory) and pods/.")
	fs.StringVar(&cfg.FreezerMount, "freezer-mount", "/sys/fs/cgroup/freezer", "cgroup v1 freezer mount.")
	fs.StringVar(&cfg.CgroupParent, "cgroup-parent", "", "Where this node's kubepods cgroup lives below the mount (the agent's --cgroup-parent).")
	fs.StringVar(&cfg.LabApp, "labapp", "labapp", "The labapp binary.")
	fs.StringVar(&cfg.LabAppImage, "labapp-image", labnode.DefaultLabAppImage, "Image name that runs the lab app.")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "Address of the kubelet checkpoint API (TLS).")
	fs.BoolVar(&cfg.DisableCheckpointAPI, "disable-checkpoint-api", false, "Answer 404 like a kubelet with the ContainerCheckpoint feature gate off.")
	fs.StringVar(&cfg.ContainerRuntime, "container-runtime", labnode.ContainerRuntimeProcess, "How pods run: \"runc\" (runc containers, checkpointed and restored by CRIU) or \"process\" (the memory stand-in for machines where criu check fails).")
	fs.StringVar(&cfg.Runc, "runc", "runc", "The runc binary (--container-runtime=runc).")
	fs.StringVar(&cfg.CRIU, "criu", "", "The criu binary runc runs (--container-runtime=runc); CRIU inherits this process's environment.")
	insecure := fs.Bool("insecure-registry", true, "Pull checkpoint images over plain HTTP (the lab registry).")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	if cfg.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	cfg.Registry = checkpointimage.PushOptions{Insecure: *insecure}
	r, err := labnode.New(cfg)
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	fmt.Printf("kubelet-api=%s ca=%s checkpoints=%s\n", r.Addr, r.CAFile, r.CheckpointDir())
	<-ctx.Done()
	r.StopAll()
	return nil
}
