package main

import (
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
)

// stats are the counters logged per timed section, to see where the time
// of the two paths differs: page faults and CPU time of the benchmark
// process (which also hosts the node runtime, and the registry when it runs
// in process) and of the registry process, garbage collections of the
// benchmark process, and dirty page cache.
type stats struct {
	minflt, cpuTicks       int64
	regMinflt, regCPUTicks int64
	gcs                    uint64
	dirtyKiB               int64
}

func sample(reg *registryProc) stats {
	var s stats
	s.minflt, s.cpuTicks = procStat(os.Getpid())
	if pid := reg.pid(); pid != 0 {
		s.regMinflt, s.regCPUTicks = procStat(pid)
	}
	m := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(m)
	if m[0].Value.Kind() == metrics.KindUint64 {
		s.gcs = m[0].Value.Uint64()
	}
	s.dirtyKiB = meminfo("Dirty")
	return s
}

func (s stats) sub(o stats) string {
	return fmt.Sprintf("minflt=%d cpu=%dms reg-minflt=%d reg-cpu=%dms gcs=%d dirty=%dMiB",
		s.minflt-o.minflt, (s.cpuTicks-o.cpuTicks)*10, s.regMinflt-o.regMinflt, (s.regCPUTicks-o.regCPUTicks)*10,
		s.gcs-o.gcs, s.dirtyKiB/1024)
}

// procStat reads minor faults and user+system CPU ticks (1/100 s) from
// /proc/<pid>/stat.
func procStat(pid int) (minflt, ticks int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	// Fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): minflt is field 10, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0
	}
	minflt, _ = strconv.ParseInt(f[7], 10, 64)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return minflt, ut + st
}

func meminfo(key string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
