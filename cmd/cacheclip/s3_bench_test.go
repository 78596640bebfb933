package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cacheclip/kvshards/s3store/s3test"
)

// BenchmarkS3JobTier is a job's questions/s with its shards in the S3 store
// and a cold local tier (every shard downloaded and checked) against a warm
// one (every shard already on local disk). Tiny test models, so shard I/O is
// a large part of each question: an upper bound on the tier's effect.
func BenchmarkS3JobTier(b *testing.B) {
	srv := s3test.Start(b)
	srv.MakeBucket(b, "bench")
	for _, kv := range srv.Env(srv.Endpoint) {
		k, v, _ := strings.Cut(kv, "=")
		b.Setenv(k, v)
	}
	const nq, nc = 200, 100
	f := newFanOutFixture(b, nq, nc)
	store := "s3://bench/job"
	job := func(b *testing.B, tier string) time.Duration {
		out := b.TempDir()
		var log bytes.Buffer
		t0 := time.Now()
		if code := mainCode(f.fanOutArgs(store, out, "--store-cache", tier), &log, &log); code != 0 {
			b.Fatalf("exit %d\n%s", code, log.String())
		}
		return time.Since(t0)
	}
	job(b, filepath.Join(b.TempDir(), "fill")) // builds and uploads every shard
	warm := filepath.Join(b.TempDir(), "warm")
	job(b, warm)
	for _, tc := range []string{"cold", "warm"} {
		b.Run(tc, func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				tier := warm
				if tc == "cold" {
					tier = filepath.Join(b.TempDir(), fmt.Sprint("cold", i))
				}
				total += job(b, tier)
			}
			b.ReportMetric(float64(nq*b.N)/total.Seconds(), "questions/s")
		})
	}
}
