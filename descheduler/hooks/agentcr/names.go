package agentcr

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LabelMigrationUID labels every object written for a migration.
const LabelMigrationUID = "livemigrate.io/migration-uid"

// ClientGetter returns the client of a member cluster (member.Clients).
type ClientGetter interface {
	Get(ctx context.Context, cluster string) (client.Client, error)
}

func short(uid types.UID) string {
	s := string(uid)
	if len(s) > 8 {
		s = s[:8]
	}
	return s
}

// objectName is <base>-<uid prefix>, cut to fit a DNS subdomain.
func objectName(base string, uid types.UID) string {
	suffix := "-" + short(uid)
	if max := 253 - len(suffix); len(base) > max {
		base = base[:max]
	}
	return fmt.Sprintf("%s%s", base, suffix)
}
