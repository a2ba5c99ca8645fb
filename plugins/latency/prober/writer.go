package prober

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
)

// ClusterLatencyResource is the resource the prober writes.
var ClusterLatencyResource = lmv1alpha1.GroupVersion.WithResource("clusterlatencies")

// DynamicStatusWriter merge-patches the status subresource of one
// ClusterLatency. It needs only get and patch on that object and on its
// status (RBAC resourceNames); with CreateIfMissing it also creates the
// object, which needs an unscoped create permission.
type DynamicStatusWriter struct {
	Client          dynamic.Interface
	CreateIfMissing bool
}

// WriteStatus implements StatusWriter. A JSON merge patch replaces the
// peers and origins lists whole, so targets removed from the configuration
// disappear from status.
func (w *DynamicStatusWriter) WriteStatus(ctx context.Context, name string, status *lmv1alpha1.ClusterLatencyStatus) error {
	patch, err := json.Marshal(map[string]interface{}{"status": status})
	if err != nil {
		return err
	}
	res := w.Client.Resource(ClusterLatencyResource)
	_, err = res.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "livemigrate-prober"}, "status")
	if apierrors.IsNotFound(err) && w.CreateIfMissing {
		obj := &unstructured.Unstructured{}
		obj.SetAPIVersion(lmv1alpha1.GroupVersion.String())
		obj.SetKind("ClusterLatency")
		obj.SetName(name)
		if _, cerr := res.Create(ctx, obj, metav1.CreateOptions{FieldManager: "livemigrate-prober"}); cerr != nil && !apierrors.IsAlreadyExists(cerr) {
			return fmt.Errorf("creating ClusterLatency %s: %w", name, cerr)
		}
		_, err = res.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "livemigrate-prober"}, "status")
	}
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("ClusterLatency %s does not exist: create it (kind ClusterLatency, apiVersion livemigrate.io/v1alpha1, named after the cluster) or run with --create-if-missing: %w", name, err)
	}
	if err != nil {
		return fmt.Errorf("patching ClusterLatency %s status: %w", name, err)
	}
	return nil
}
