package member

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/livemigrate/livemigrate/test/builder"
)

func TestClientsBuildFromKarmadaCredentialsAndCache(t *testing.T) {
	cl, sec := builder.Push(builder.MakeCluster("m1").Obj(), "https://10.0.0.1:6443")
	karmada := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(cl, sec).Build()
	var configs []*rest.Config
	c := &Clients{Reader: karmada, Scheme: builder.Scheme(), NewClient: func(cfg *rest.Config, _ client.Options) (client.Client, error) {
		configs = append(configs, cfg)
		return fake.NewClientBuilder().Build(), nil
	}}
	ctx := context.Background()
	first, err := c.Get(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Get(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if first != again || len(configs) != 1 {
		t.Fatalf("client rebuilt without a change: %d builds", len(configs))
	}
	got := struct{ Host, Token, CA string }{configs[0].Host, configs[0].BearerToken, string(configs[0].CAData)}
	want := struct{ Host, Token, CA string }{"https://10.0.0.1:6443", "token-m1", "ca-m1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rest config (-want +got):\n%s", diff)
	}

	// A rotated token rebuilds the client.
	sec.Data[clusterv1alpha1.SecretTokenKey] = []byte("rotated")
	if err := karmada.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if len(configs) != 2 || configs[1].BearerToken != "rotated" {
		t.Fatalf("client not rebuilt after the Secret changed: %d builds", len(configs))
	}
}

func TestClientsErrors(t *testing.T) {
	pushNoSecret, _ := builder.Push(builder.MakeCluster("nosecret").Obj(), "https://x")
	pull := builder.MakeCluster("pull").Obj()
	pull.Spec.SyncMode = clusterv1alpha1.Pull
	noRef := builder.MakeCluster("noref").Obj()
	karmada := fake.NewClientBuilder().WithScheme(builder.Scheme()).WithObjects(pushNoSecret, pull, noRef).Build()
	c := &Clients{Reader: karmada, Scheme: builder.Scheme()}
	for name, want := range map[string]string{
		"missing":  "getting Cluster missing",
		"nosecret": "getting the credentials Secret karmada-cluster/nosecret",
		"pull":     "Pull mode",
		"noref":    "no spec.secretRef",
	} {
		_, err := c.Get(context.Background(), name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Get(%s) error = %v, want it to mention %q", name, err, want)
		}
	}
}
