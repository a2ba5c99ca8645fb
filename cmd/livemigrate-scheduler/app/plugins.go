package app

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"

	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"
	karmadainformers "github.com/karmada-io/karmada/pkg/generated/informers/externalversions"
	"github.com/karmada-io/karmada/pkg/scheduler/framework"

	"github.com/livemigrate/livemigrate/plugins/capacity"
	"github.com/livemigrate/livemigrate/plugins/config"
	"github.com/livemigrate/livemigrate/plugins/latency"
	"github.com/livemigrate/livemigrate/plugins/latency/prober"
)

// ComponentName is reported as the source of Events.
const ComponentName = "livemigrate-scheduler"

// pluginRuntime builds, once and only when a plugin is first constructed
// (Karmada calls factories after parsing flags), the clients and informers
// the plugins read from. It reads the stock --kubeconfig, --master,
// --kube-api-qps and --kube-api-burst flags, so the plugins talk to the same
// Karmada control plane as the scheduler itself.
type pluginRuntime struct {
	ctx   context.Context
	flags *pflag.FlagSet
	cfg   *config.SchedulerPluginsConfiguration

	once sync.Once
	err  error

	karmadaFactory karmadainformers.SharedInformerFactory
	dynamicFactory dynamicinformer.DynamicSharedInformerFactory
	recorder       record.EventRecorder
	mapper         *restmapper.DeferredDiscoveryRESTMapper
	generation     atomic.Uint64
	store          *latency.Store
	templates      *latency.TemplateInformers
}

func (r *pluginRuntime) flag(name string) string {
	if f := r.flags.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

func (r *pluginRuntime) restConfig() (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags(r.flag("master"), r.flag("kubeconfig"))
	if err != nil {
		return nil, fmt.Errorf("building kubeconfig for the livemigrate plugins: %w", err)
	}
	qps, err1 := strconv.ParseFloat(r.flag("kube-api-qps"), 32)
	burst, err2 := strconv.Atoi(r.flag("kube-api-burst"))
	if err1 == nil && err2 == nil {
		rc.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(float32(qps), burst)
	}
	return rest.AddUserAgent(rc, ComponentName+"-plugins"), nil
}

// init builds clients and informer factories (informers start in start()).
func (r *pluginRuntime) init() error {
	r.once.Do(func() {
		rc, err := r.restConfig()
		if err != nil {
			r.err = err
			return
		}
		karmadaClient, err := karmadaclient.NewForConfig(rc)
		if err != nil {
			r.err = err
			return
		}
		dynamicClient, err := dynamic.NewForConfig(rc)
		if err != nil {
			r.err = err
			return
		}
		kubeClient, err := kubernetes.NewForConfig(rc)
		if err != nil {
			r.err = err
			return
		}
		disc, err := discovery.NewDiscoveryClientForConfig(rc)
		if err != nil {
			r.err = err
			return
		}
		r.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
		r.karmadaFactory = karmadainformers.NewSharedInformerFactory(karmadaClient, 0)
		r.dynamicFactory = dynamicinformer.NewDynamicSharedInformerFactory(dynamicClient, 0)

		broadcaster := record.NewBroadcaster(record.WithContext(r.ctx))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kubeClient.CoreV1().Events("")})
		r.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: ComponentName})
	})
	return r.err
}

// start starts every informer registered so far and waits, bounded by
// informerSyncTimeout, for the given ones. Informers that do not sync in time
// (e.g. the ClusterLatency CRD is not installed yet) keep trying in the
// background; until then the plugins see no data, which filters nothing.
func (r *pluginRuntime) start(waitFor map[string]cache.InformerSynced) {
	r.karmadaFactory.Start(r.ctx.Done())
	r.dynamicFactory.Start(r.ctx.Done())
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Latency.InformerSyncTimeout.Duration)
	defer cancel()
	for name, synced := range waitFor {
		if !cache.WaitForCacheSync(ctx.Done(), synced) {
			klog.InfoS("Informer not synced yet; its data will be missing until it is", "informer", name)
		}
	}
}

// newCapacity is the Capacity plugin factory given to app.WithPlugin.
func (r *pluginRuntime) newCapacity() (framework.Plugin, error) {
	p, err := capacity.New(r.cfg.Capacity)
	if err != nil {
		return nil, err
	}
	if err := r.init(); err != nil {
		return nil, err
	}
	inf := r.karmadaFactory.Cluster().V1alpha1().Clusters().Informer()
	if _, err := inf.AddEventHandler(p.EventHandler()); err != nil {
		return nil, err
	}
	// Capacity computes a cluster it has not precomputed yet from the Cluster
	// object Filter receives, so it does not wait for this informer.
	r.start(nil)
	return p, nil
}

// newLatency is the Latency plugin factory given to app.WithPlugin.
func (r *pluginRuntime) newLatency() (framework.Plugin, error) {
	if err := r.init(); err != nil {
		return nil, err
	}
	args := r.cfg.Latency
	r.store = latency.NewStore(*args.Percentile)
	clInformer := r.dynamicFactory.ForResource(prober.ClusterLatencyResource).Informer()
	if _, err := clInformer.AddEventHandler(r.store.EventHandler()); err != nil {
		return nil, err
	}
	waitFor := map[string]cache.InformerSynced{"clusterlatencies": clInformer.HasSynced}
	bump := func() { r.generation.Add(1) }
	r.templates = latency.NewTemplateInformers(r.ctx, r.dynamicFactory, r.mapper, args.InformerSyncTimeout.Duration, bump)
	for _, s := range args.TemplateResources {
		gvr, err := config.ParseGVR(s)
		if err != nil {
			return nil, err
		}
		inf, err := r.templates.Watch(gvr)
		if err != nil {
			klog.ErrorS(err, "Not watching template resource; it will be watched on first sight if it appears", "resource", s)
			continue
		}
		waitFor[s] = inf.HasSynced
	}
	pp := r.karmadaFactory.Policy().V1alpha1().PropagationPolicies()
	cpp := r.karmadaFactory.Policy().V1alpha1().ClusterPropagationPolicies()
	for name, inf := range map[string]cache.SharedIndexInformer{"propagationpolicies": pp.Informer(), "clusterpropagationpolicies": cpp.Informer()} {
		if _, err := inf.AddEventHandler(latency.PolicyEventHandler(&r.generation)); err != nil {
			return nil, err
		}
		waitFor[name] = inf.HasSynced
	}
	p, err := latency.New(args, latency.Handle{
		Store:      r.store,
		Templates:  r.templates,
		Policies:   latency.PolicyListers{PropagationPolicies: pp.Lister(), ClusterPropagationPolicies: cpp.Lister()},
		Recorder:   r.recorder,
		Generation: &r.generation,
	})
	if err != nil {
		return nil, err
	}
	r.start(waitFor)
	return p, nil
}
