package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// RegistryFaultBlobGet is the lab registry's fault that refuses every blob
// download with 404 BLOB_UNKNOWN while uploads, HEAD checks and manifests
// keep working: a checkpoint image is pushed, and its pull fails (see
// labnode.FaultBlobGet).
const RegistryFaultBlobGet = "blob-get"

// SetRegistryFault turns a fault of the lab registry on or off, through
// the switch on the registry's own listener (PUT or DELETE
// /lab/faults/<fault>). Every address of the registry (RegistryHost,
// RegistryHostAt) reaches the same process, so the fault applies to all of
// them. A restarted registry starts with every fault off.
func (l *Lab) SetRegistryFault(ctx context.Context, fault string, on bool) error {
	ins := l.Instances("lab-registry")
	if len(ins) == 0 {
		return fmt.Errorf("the lab runs no lab-registry")
	}
	method := http.MethodDelete
	if on {
		method = http.MethodPut
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+ins[0].Addr("registry")+"/lab/faults/"+fault, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("switching registry fault %s: %w", fault, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("switching registry fault %s: %s: %s", fault, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// KillProcess ends a process of the lab's infrastructure at once
// (SIGKILL), as a crash would: an apiserver ("kube-apiserver-<cluster>",
// "kube-apiserver-karmada" for the Karmada plane), a controller
// ("karmada-controller-manager", "kube-controller-manager-<member>") or
// any other process PIDs lists. The lab does not count it as an
// unexpected exit; RestartProcess brings it back. Components (Instances)
// have Kill and Restart.
func (l *Lab) KillProcess(name string) error {
	if l.sup.killNamed(name) == 0 {
		return fmt.Errorf("%s is not running", name)
	}
	l.logger.Info("Process killed", "process", name)
	return nil
}

// RestartProcess starts a process ended by KillProcess again, with the
// same command line, and waits until it serves: an apiserver's /readyz,
// karmada-controller-manager's /healthz.
func (l *Lab) RestartProcess(ctx context.Context, name string) error {
	if err := l.sup.restartNamed(name); err != nil {
		return err
	}
	l.logger.Info("Process restarted", "process", name)
	switch {
	case strings.HasPrefix(name, "kube-apiserver-"):
		for _, c := range l.clusters() {
			if "kube-apiserver-"+c.Name == name {
				return l.waitReadyz(ctx, c)
			}
		}
	case name == "karmada-controller-manager":
		health, err := l.port("karmada-controller-manager-health")
		if err != nil {
			return err
		}
		return waitHTTP(ctx, name, fmt.Sprintf("http://127.0.0.1:%d/healthz", health), nil)
	}
	return nil
}
