package member

import (
	"context"
	"fmt"
	"sync"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	"github.com/karmada-io/karmada/pkg/util"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NewClientFunc builds a client from a rest config (client.New in production).
type NewClientFunc func(*rest.Config, client.Options) (client.Client, error)

// Clients caches one client per member cluster.
type Clients struct {
	// Reader reads Clusters and Secrets in the Karmada control plane.
	Reader client.Reader
	// Scheme of the member clients (core, apps and the agent API).
	Scheme *runtime.Scheme
	// QPS and Burst of each member client.
	QPS   float32
	Burst int
	// NewClient defaults to client.New.
	NewClient NewClientFunc

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	version string
	client  client.Client
}

// Config returns the rest config of the member cluster, with the client's
// QPS and burst.
func (c *Clients) Config(ctx context.Context, cluster string) (*rest.Config, error) {
	cfg, _, err := c.config(ctx, cluster)
	return cfg, err
}

// config builds the rest config and the version (Cluster and Secret
// resourceVersions) it was built from.
func (c *Clients) config(ctx context.Context, cluster string) (*rest.Config, string, error) {
	cl := &clusterv1alpha1.Cluster{}
	if err := c.Reader.Get(ctx, types.NamespacedName{Name: cluster}, cl); err != nil {
		return nil, "", fmt.Errorf("getting Cluster %s: %w", cluster, err)
	}
	if cl.Spec.SyncMode == clusterv1alpha1.Pull {
		return nil, "", fmt.Errorf("cluster %s is in Pull mode: the descheduler needs push-mode credentials (spec.secretRef) to reach it", cluster)
	}
	var secretVersion string
	secretGetter := func(namespace, name string) (*corev1.Secret, error) {
		s := &corev1.Secret{}
		if err := c.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s); err != nil {
			return nil, fmt.Errorf("getting the credentials Secret %s/%s of cluster %s: %w", namespace, name, cluster, err)
		}
		secretVersion = s.ResourceVersion
		return s, nil
	}
	// The secret is read first to know whether the cache is still valid.
	if cl.Spec.SecretRef == nil {
		return nil, "", fmt.Errorf("cluster %s has no spec.secretRef: register it in Push mode", cluster)
	}
	if _, err := secretGetter(cl.Spec.SecretRef.Namespace, cl.Spec.SecretRef.Name); err != nil {
		return nil, "", err
	}
	version := cl.ResourceVersion + "/" + secretVersion
	cfg, err := util.BuildClusterConfig(cluster,
		func(string) (*clusterv1alpha1.Cluster, error) { return cl, nil },
		secretGetter)
	if err != nil {
		return nil, "", fmt.Errorf("building the client config of cluster %s: %w", cluster, err)
	}
	if c.QPS > 0 {
		cfg.QPS, cfg.Burst = c.QPS, c.Burst
	}
	return cfg, version, nil
}

// Get returns the client of the member cluster.
func (c *Clients) Get(ctx context.Context, cluster string) (client.Client, error) {
	cfg, version, err := c.config(ctx, cluster)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cache[cluster]; ok && e.version == version {
		return e.client, nil
	}
	newClient := c.NewClient
	if newClient == nil {
		newClient = client.New
	}
	mc, err := newClient(cfg, client.Options{Scheme: c.Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the client of cluster %s: %w", cluster, err)
	}
	if c.cache == nil {
		c.cache = map[string]cached{}
	}
	c.cache[cluster] = cached{version: version, client: mc}
	return mc, nil
}
